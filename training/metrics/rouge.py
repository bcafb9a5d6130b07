"""Persian-aware ROUGE."""


def rouge(predictions, references) -> dict:  # filled in with the summarizer trainer
    raise NotImplementedError
