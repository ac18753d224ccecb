"""Model families: what kind of frozen model a prompt goes into, and so where it is inserted."""

from __future__ import annotations

from enum import StrEnum


class Family(StrEnum):
    """The kind of a frozen base model. A ``str``: equal to its value, and stored as it in JSON.

    * ``CAUSAL``: decoder-only LM; the prompt follows the lead BOS token.
    * ``SEQ2SEQ``: encoder-decoder LM; the prompt goes before the encoder's input.
    * ``ENCODER``: encoder with a sequence-classification head; the prompt follows ``[CLS]``.
    * ``BASE``: plain encoder without a head (e.g. the input encoder of an instance-dependent
      method); it takes no prompt.
    """

    CAUSAL = "causal"
    SEQ2SEQ = "seq2seq"
    ENCODER = "encoder"
    BASE = "base"
