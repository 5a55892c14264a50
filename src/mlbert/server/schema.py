"""The request and response documents of the HTTP API (they make its OpenAPI document), and the one
place a request's texts are validated."""

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..data import lone_surrogate

# Some character that is not whitespace by Python's str.isspace (the rule of the Python API's
# check_texts), spelled out rather than written `\s`: the regex engines disagree on `\s` (pydantic's Rust
# engine counts U+0085 as space, ECMA-262, which clients and schema fuzzers read the OpenAPI pattern
# with, does not; ECMA counts U+FEFF, the others do not). Checked character by character in the tests.
NOT_BLANK = (
    r"[^\u0009-\u000d\u001c-\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f"
    r"\u3000]"
)


# -- request and response documents (these make the OpenAPI document) ------------------------------
def request_model(max_texts: int, max_chars: int, max_explain_texts: int = 8) -> type[BaseModel]:
    """The request document with this server's limits in it, so the OpenAPI document states them."""

    Text = Annotated[str, Field(pattern=NOT_BLANK, max_length=max_chars, strict=True)]

    class PredictRequest(BaseModel):
        # Exactly one of `texts` and `text`, said in the schema too, so that clients and fuzzers know it.
        model_config = ConfigDict(
            extra="forbid", json_schema_extra={"oneOf": [{"required": ["texts"]}, {"required": ["text"]}]}
        )
        # strict: "0.5" or true for a threshold, "2" for top_k are type mistakes, not values to coerce.
        # Absent by default but never null: the schema says "array" and "string", not "or null".
        texts: list[Text] = Field(None, min_length=1, max_length=max_texts, description="texts to label, none blank")
        text: Text = Field(None, description="one text to label (instead of texts); answered as one prediction")
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

        explain: bool = Field(
            False,
            strict=True,
            description=f"also say which words drove each label (at most {max_explain_texts} texts a request; "
            "slow: about 25 forward passes per text and label)",
        )

        @field_validator("top_k", mode="before")
        @classmethod
        def whole_number(cls, value):
            """JSON Schema's integer includes 2.0; a string or a boolean stays a type mistake."""
            return int(value) if isinstance(value, float) and value.is_integer() else value

        @model_validator(mode="after")
        def one_text_field(self):
            if (self.texts is None) == (self.text is None):
                raise ValueError('give either "texts": [...] or "text": "..."')
            if self.explain and len(self.all_texts()) > max_explain_texts:
                raise ValueError(
                    f"explain takes at most {max_explain_texts} texts a request, got {len(self.all_texts())}; "
                    "send the others in more requests, or without explain"
                )
            for i, text in enumerate(self.all_texts()):  # what the pattern cannot say
                if lone_surrogate(text) is not None:
                    raise ValueError(f"texts[{i}] is not valid Unicode (lone surrogate)")
            return self

        def all_texts(self) -> list[str]:
            return list(self.texts) if self.texts is not None else [self.text]

    return PredictRequest


class Word(BaseModel):
    text: str = Field(description="the word as it appears in the text: text[start:end]")
    start: int = Field(description="its first character's index in the text (Unicode code points)")
    end: int
    attribution: float = Field(description="its share of the label's logit: + for, - against")


class LabelScore(BaseModel):
    label: str
    score: float
    words: list[Word] | None = Field(None, description='with "explain": the words that moved the score most')


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
    max_explain_texts: int
    max_explain_labels: int


class Status(BaseModel):
    status: str


class ErrorResponse(BaseModel):
    error: str


ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 413, 415, 422, 503)}
