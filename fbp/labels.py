"""The label set: 7 discourse classes, BIO-tagged at the word level (15 labels)."""

CLASSES = (
    "Lead",
    "Position",
    "Claim",
    "Counterclaim",
    "Rebuttal",
    "Evidence",
    "Concluding Statement",
)
OUTSIDE = "O"
# Index 0 is "O"; class c (0-based) has B at 1 + 2c and I at 2 + 2c.
# Column headers for tables that show every class side by side.
SHORT_NAMES = {"Lead": "Lead", "Position": "Posit", "Claim": "Claim", "Counterclaim": "Counter", "Rebuttal": "Rebut",
               "Evidence": "Evid", "Concluding Statement": "Concl"}
LABELS = (OUTSIDE,) + tuple(f"{prefix}-{cls}" for cls in CLASSES for prefix in ("B", "I"))
NUM_LABELS = len(LABELS)
LABEL2ID = {label: i for i, label in enumerate(LABELS)}
ID2LABEL = dict(enumerate(LABELS))


def begin_id(class_index: int) -> int:
    """Label id of ``B-<class>`` for the class at ``class_index`` in :data:`CLASSES`."""
    return 1 + 2 * class_index


def inside_id(class_index: int) -> int:
    """Label id of ``I-<class>`` for the class at ``class_index`` in :data:`CLASSES`."""
    return 2 + 2 * class_index
