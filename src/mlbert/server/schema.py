"""The request and response documents of the HTTP API (they make its OpenAPI document), and the one
place a request's texts are validated."""

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Some character that is not whitespace by Python's str.isspace (the rule of the Python API's
# check_texts), spelled out rather than written `\s`: the regex engines disagree on `\s` (pydantic's Rust
# engine counts U+0085 as space, ECMA-262, which clients and schema fuzzers read the OpenAPI pattern
# with, does not; ECMA counts U+FEFF, the others do not). Checked character by character in the tests.
NOT_BLANK = (
    r"[^\u0009-\u000d\u001c-\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f"
    r"\u3000]"
)


# -- request and response documents (these make the OpenAPI document) ------------------------------
def request_model(max_texts: int, max_chars: int) -> type[BaseModel]:
    """The request document with this server's limits in it, so the OpenAPI document states them."""

    class PredictRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        # strict: "0.5" or true for a threshold, "2" for top_k are type mistakes, not values to coerce.
        texts: list[Annotated[str, Field(pattern=NOT_BLANK, max_length=max_chars, strict=True)]] = Field(
            min_length=1, max_length=max_texts, description="texts to label, none blank"
        )
        threshold: float | None = Field(
            None,
            strict=True,
            ge=0.0,
            le=1.0,
            allow_inf_nan=False,
            description="one cut-off for every label instead of the model's tuned ones",
        )
        top_k: int | None = Field(
            None, ge=1, strict=True, description="at most this many labels per text (threshold 0: exactly k)"
        )

        @field_validator("top_k", mode="before")
        @classmethod
        def whole_number(cls, value):
            """JSON Schema's integer includes 2.0; a string or a boolean stays a type mistake."""
            return int(value) if isinstance(value, float) and value.is_integer() else value

        @field_validator("texts")
        @classmethod
        def encodable(cls, texts: list[str]) -> list[str]:
            """What the pattern cannot say: a JSON escape can decode to a lone surrogate, which no tokenizer takes."""
            for i, text in enumerate(texts):
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError:
                    raise ValueError(f"texts[{i}] is not valid Unicode (lone surrogate)") from None
            return texts

    return PredictRequest


class LabelScore(BaseModel):
    label: str
    score: float


class Prediction(BaseModel):
    labels: list[LabelScore] = Field(description="labels at or above their threshold, highest score first")


class PredictResponse(BaseModel):
    predictions: list[Prediction]


class LabelsResponse(BaseModel):
    labels: list[str]
    thresholds: list[float] = Field(description="the cut-off used for each label when no threshold is given")
    threshold_mode: str
    max_texts: int
    max_chars: int


class Status(BaseModel):
    status: str


class ErrorResponse(BaseModel):
    error: str


ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 413, 422, 503)}
