"""Typed errors of the text side, each with a stable machine-readable ``reason`` like the image errors."""

from __future__ import annotations


class TextError(RuntimeError):
    """Base of the text-model errors. ``reason`` is a stable code; the message is for people."""

    reason = "text_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


class TextModelMissingError(TextError):
    """No trained text model where one was expected (never trained, or the folder was removed)."""

    reason = "text_model_missing"


class TextModelIncompatibleError(TextError):
    """An artifact written by an incompatible version (format, tokenizer or dictionary changed)."""

    reason = "text_model_incompatible"


class TextInputError(TextError, TypeError):
    """An item of a batch that is not text at all (``None``, a number); raised before any work is done."""

    reason = "not_text"


class TextTrainingError(TextError, ValueError):
    """The training texts cannot make a model (too few documents or words)."""

    reason = "training_failed"


TRAIN_HINT = (
    "train one with `niteru train-text` (reads the catalog's titles and descriptions) or "
    "`embedding.text.train_text_model(texts, config)`"
)
