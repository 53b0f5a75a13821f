"""``fbp pretrain``: domain-adaptive masked-LM pretraining of an encoder on essay text ("Don't Stop Pretraining",
Gururangan et al., 2020), so that ``fbp train --model DIR`` starts from an encoder that has read essays.

Flow (:func:`pretrain`): gather the text (the processed essays', plus folders of ``.txt`` essays) -> tokenize each
essay's words, concatenate, cut into blocks of ``pretrain.max_length`` tokens -> the Hugging Face Trainer on
``AutoModelForMaskedLM`` with whole-word masking (``DataCollatorForLanguageModeling(whole_word_mask=True)``) ->
the masked-LM loss on held-out blocks -> the model directory (:mod:`fbp.io.pretrained`).

Unfinished work lives next to the output, in ``OUT.pretrain-work/`` (Trainer checkpoints, the lock, the settings):
running the same command again resumes from the last checkpoint; it is removed once the model is written.
Nothing here prints: progress goes to a :class:`PretrainReporter`.

Modules: :mod:`.text` (the essays and their blocks), :mod:`.workdir` (checks before any work, the work folder and
resuming), :mod:`.trainer` (the Trainer pieces: masked-LM loss on masked tokens, progress, dropout, wandb),
:mod:`.report` (what is reported) and :mod:`.run` (:func:`pretrain`, the whole flow).
"""

from .report import PretrainPlan, PretrainProgress, PretrainReporter
from .run import pretrain
from .text import PretrainText, gather_text, make_blocks
from .workdir import WORK_SUFFIX, check_output, work_dir_of

__all__ = ["PretrainPlan", "PretrainProgress", "PretrainReporter", "PretrainText", "WORK_SUFFIX", "check_output",
           "gather_text", "make_blocks", "pretrain", "work_dir_of"]
