"""Request and response bodies of the JSON API, and the checks each article gets.

Types, unknown fields and ranges are checked by pydantic (strictly: ``"3"`` is not a number);
each text then gets ``khabar predict``'s checks (not empty, not over its size limit), and the
server's limits apply (texts per request, beams, summary length). Any failure is a
:class:`RequestError` whose message names the field and the item index.

Example:
    >>> request = ClassifyRequest(texts=["خبر ورزشی"], titles=["فوتبال"])
    >>> [article.classifier_text for article in articles(request, max_texts=8)]
    ['فوتبال\\nخبر ورزشی']
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, model_validator

from inference.batch.checks import MAX_TEXT_CHARS, InputColumns, check_row
from inference.batch.reading import Row
from inference.normalize import join_title, normalize

_ITEM_FIELDS = InputColumns(text="text", title="title")


class RequestError(ValueError):
    """A request the server refuses: ``status`` is the HTTP status, the message the one-line ``detail``.

    Example:
        >>> RequestError(413, "too big").status
        413
    """

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class TextsRequest(_Body):
    """One article (``text``) or several (``texts``); results come back in the same order."""

    text: str | None = Field(None, description="one article; or use texts")
    texts: list[str] | None = Field(None, description="several articles, answered in this order")

    @model_validator(mode="after")
    def _one_of_text_or_texts(self):
        if (self.text is None) == (self.texts is None):
            raise ValueError("give either text (one article) or texts (a list), not both or neither")
        return self


class TitledRequest(TextsRequest):
    """Articles with optional headlines, read before the text by the classifier (as ``khabar predict``)."""

    title: str | None = Field(None, description="the headline of text")
    titles: list[str | None] | None = Field(None, description="a headline (or null) per item of texts")

    @model_validator(mode="after")
    def _titles_match_texts(self):
        if self.title is not None and self.text is None:
            raise ValueError("title goes with text; with texts use titles")
        if self.titles is not None:
            if self.texts is None:
                raise ValueError("titles goes with texts; with text use title")
            if len(self.titles) != len(self.texts):
                raise ValueError(f"titles has {len(self.titles)} items and texts {len(self.texts)}: give one per text")
        return self


class _TopK(BaseModel):
    top_k: int = Field(1, ge=1, description="how many topics per article, best first (at most all labels)")


class _Decoding(BaseModel):
    num_beams: int | None = Field(None, ge=1, description="beam width (default: the model's)")
    max_new_tokens: int | None = Field(None, ge=1, description="summary length cap in tokens (default: the model's)")


class ClassifyRequest(TitledRequest, _TopK):
    """``POST /v1/classify``: ``{"texts": [...], "top_k": 3}``."""


class SummarizeRequest(TextsRequest, _Decoding):
    """``POST /v1/summarize``: ``{"texts": [...], "num_beams": 4, "max_new_tokens": 64}``."""


class AnalyzeRequest(TitledRequest, _TopK, _Decoding):
    """``POST /v1/analyze``: topics and summaries in one call."""


class Topic(BaseModel):
    label: str
    score: float


class Result(BaseModel):
    """One article's answer: its fields, or ``error`` saying why this article alone failed."""

    topic: str | None = Field(None, description="the most likely topic")
    score: float | None = Field(None, description="its probability")
    topics: list[Topic] | None = Field(None, description="the top_k topics, best first")
    summary: str | None = None
    error: str | None = Field(None, description="why this article failed; the others are unaffected")


class Results(BaseModel):
    """The answer to a request: one result per article, in input order."""

    results: list[Result]


@dataclass(frozen=True)
class Article:
    """A checked item: the text the summarizer reads and the text (with title) the classifier reads.

    Example:
        >>> Article("متن", "تیتر\\nمتن").text
        'متن'
    """

    text: str
    classifier_text: str


def articles(request: TextsRequest, max_texts: int, max_chars: int = MAX_TEXT_CHARS) -> list[Article]:
    """The request's articles after ``khabar predict``'s checks; a :class:`RequestError` names the first bad one.

    Example:
        >>> articles(SummarizeRequest(texts=["خبر", "  "]), max_texts=8)
        Traceback (most recent call last):
        ...
        inference.serve.schemas.RequestError: texts[1]: text is empty
    """
    texts = [request.text] if request.texts is None else request.texts
    titles = [getattr(request, "title", None)] if request.texts is None else getattr(request, "titles", None)
    field = "text" if request.texts is None else "texts"
    if len(texts) > max_texts:
        raise RequestError(413, f"{field}: {len(texts)} articles, over the server's limit of {max_texts} per request")
    if not texts:
        raise RequestError(422, f"{field}: empty list; give at least one article")
    limit = min(max_chars, MAX_TEXT_CHARS)  # a server may set a lower limit than the CLI's, not a higher one
    checked = []
    for index, (text, title) in enumerate(zip(texts, titles or [None] * len(texts), strict=True)):
        where = field if request.texts is None else f"{field}[{index}]"
        if len(text) > limit:
            raise RequestError(413, f"{where}: text is {len(text):,} characters, over the {limit:,} limit")
        if isinstance(title, str) and len(title) > limit:  # read with the text: it counts toward the same bound
            named = "title" if request.texts is None else f"titles[{index}]"
            raise RequestError(413, f"{named}: title is {len(title):,} characters, over the {limit:,} limit")
        problem = check_row(Row(index, index + 1, {"text": text, "title": title}), _ITEM_FIELDS)
        if isinstance(problem, dict):
            reason = problem["error"]
            if "field 'title'" in reason:  # the title is at fault: name it, not the text
                where = "title" if request.texts is None else f"titles[{index}]"
            raise RequestError(422, f"{where}: {_plain(reason)}")
        if not normalize(text):  # the models would get nothing: refuse it as plain whitespace is
            raise RequestError(422, f"{where}: text is empty after normalization (only invisible marks)")
        checked.append(Article(text, join_title(title, text)))
    return checked


def _plain(reason: str) -> str:
    """``khabar predict``'s reason without the column name, which here is always ``text``."""
    return reason.replace("text field 'text' is", "text is")


def check_limits(request: BaseModel, max_num_beams: int, max_new_tokens: int) -> None:
    """Refuse decoding settings over the server's limits.

    Example:
        >>> check_limits(SummarizeRequest(text="خبر", num_beams=9), max_num_beams=8, max_new_tokens=64)
        Traceback (most recent call last):
        ...
        inference.serve.schemas.RequestError: num_beams: 9 is over the server's limit of 8
    """
    for name, limit in (("num_beams", max_num_beams), ("max_new_tokens", max_new_tokens)):
        value = getattr(request, name, None)
        if value is not None and value > limit:
            raise RequestError(422, f"{name}: {value} is over the server's limit of {limit}")
