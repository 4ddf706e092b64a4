"""Label-free verifiable-answer checks: does the response do what the instruction verifiably asks?

Cheap rules in the spirit of IFEval and of Alpaca-cleaned (gururise/AlpacaDataCleaned), which found
Alpaca's worst rows by such checks: answers to an instruction about material that is not there,
wrong arithmetic, lists of the wrong length, classifications that name none of the offered labels,
code that does not parse, "rewrites" that change nothing. Each check answers ``+1`` (the response
passes), ``-1`` (it fails) or ``0`` (the check does not apply), so a probe can weigh a pass and a fail
differently from "not applicable". Nothing here evaluates code: arithmetic goes through a tiny parser
of numbers, ``+ - * / ^``, parentheses and percentages, Python code only through :func:`ast.parse`.
"""

from __future__ import annotations

import ast
import re

NUMBER_WORDS = {
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "fifteen": 15,
    "twenty": 20,
}
_COUNT_WORD = r"(\d{1,2}|" + "|".join(NUMBER_WORDS) + r")"

# The instruction points at material it does not itself hold ("Summarize the following article.").
REFERS = re.compile(
    r"\b(the following|(the )?given (text|sentence|passage|article|paragraph|code|data|list|story|poem|"
    r"statement|input|phrase|document|email|essay|review|table|tweet)|this (sentence|text|"
    r"article|passage|paragraph|code|poem|story|statement|essay|email|review|document|tweet|list|phrase)|"
    r"the (above|below)|(shown|provided|listed|mentioned) (above|below)|(above|below) (text|sentence|passage))\b",
    re.IGNORECASE,
)
# Material inside the instruction itself: a quotation, or a colon / line break followed by words.
INLINE_MATERIAL = re.compile(r"[\"“”'‘’].{3,}[\"“”'‘’]|[:?]\s*\S|\n\s*\S", re.DOTALL)

CALCULATE = re.compile(
    r"\b(calculate|compute|evaluate|what is|what's|find|solve|simplify|add|subtract|multiply|divide|sum|"
    r"product|total|result|value|how much|answer)\b",
    re.IGNORECASE,
)
_NUM = r"\d+(?:,\d{3})*(?:\.\d+)?%?"
# An expression: numbers joined by at least one operator, possibly parenthesized.
EXPRESSION = re.compile(
    rf"(?<![\w.^])[(\s]*{_NUM}(?:\s*[-+*/x×÷^]\s*[(\s]*{_NUM}[)\s]*)+(?!\w|\.\d|\s*[-+*/x×÷^]\s*[(\d])",
)
WORD_PROBLEMS = (
    (re.compile(rf"\bsum of ({_NUM}) and ({_NUM})\b", re.I), lambda a, b: a + b),
    (re.compile(rf"\bproduct of ({_NUM}) and ({_NUM})\b", re.I), lambda a, b: a * b),
    (re.compile(rf"\bdifference between ({_NUM}) and ({_NUM})\b", re.I), lambda a, b: a - b),
    (re.compile(rf"\b({_NUM}) (?:plus|added to) ({_NUM})\b", re.I), lambda a, b: a + b),
    (re.compile(rf"\b({_NUM}) minus ({_NUM})\b", re.I), lambda a, b: a - b),
    (re.compile(rf"\b({_NUM}) (?:times|multiplied by) ({_NUM})\b", re.I), lambda a, b: a * b),
    (re.compile(rf"\b({_NUM}) divided by ({_NUM})\b", re.I), lambda a, b: a / b if b else None),
    (re.compile(rf"\b({_NUM})\s*(?:%|percent) of ({_NUM})\b", re.I), lambda a, b: a * b / 100),
)
AVERAGE = re.compile(r"\b(average|mean)\b", re.IGNORECASE)
NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?")

COUNT_ITEMS = re.compile(
    rf"\b(list|name|give|provide|generate|suggest|identify|brainstorm|write|create|come up with|mention|"
    rf"state|outline|describe|enumerate|find|think of)\s+(?:me\s+|at least\s+|up to\s+|exactly\s+)?{_COUNT_WORD}"
    rf"\s+(?!(?:words?|sentences?|lines?|paragraphs?|syllables?|characters?|letters?|minutes?|hours?|days?|"
    rf"years?|times?)\b)",
    re.IGNORECASE,
)
COUNT_UNITS = re.compile(
    rf"\b(?:in|of|under|within|than)\s+(?:about\s+|exactly\s+|at most\s+|no more than\s+|less than\s+|"
    rf"fewer than\s+|up to\s+)?{_COUNT_WORD}(?:\s*(?:-|to)\s*{_COUNT_WORD})?\s+(words?|sentences?)\b",
    re.IGNORECASE,
)
ITEM_LINE = re.compile(r"(?m)^\s*(?:\d+[.)]|[-*•]|[a-z][.)])\s+\S")
SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)")

OPTION_PAIRS = (
    ("positive", "negative", "neutral", "mixed"),
    ("true", "false"),
    ("yes", "no"),
    ("fact", "opinion"),
    ("formal", "informal"),
    ("correct", "incorrect"),
    ("valid", "invalid"),
    ("agree", "disagree"),
    ("active", "passive"),
    ("literal", "figurative"),
    ("declarative", "interrogative", "imperative", "exclamatory"),
)
# "classify ... as X or Y" with single-word options named in the instruction.
NAMED_OPTIONS = re.compile(
    r"\b(?:as|into|either|is it|whether(?: it is)?)\s+(?:an?\s+)?(\w+)\s*,?\s+or\s+(?:an?\s+)?(\w+)", re.I
)
DIGIT_CODES = re.compile(r"\b\d\s+for\b|\(\d\)", re.I)
ASKS_FOR_QUESTION = re.compile(r"\b(construct|compose|create|generate|write|come up with|form)\b.*\bquestions?\b", re.I)
CLASSIFY = re.compile(
    r"\b(classify|categori[sz]e|label|determine|decide|identify|answer|is (?:it|this|the)|tell)\b", re.I
)

PYTHON_ASKED = re.compile(r"\bpython\b", re.IGNORECASE)
CODE_ASKED = re.compile(r"\b(code|function|program|script|snippet|implement|algorithm)\b", re.IGNORECASE)
OTHER_LANGUAGE = re.compile(
    r"\b(java|javascript|c\+\+|c#|ruby|php|html|css|sql|swift|kotlin|rust|golang|go program|bash|shell|r program|"
    r"matlab|perl|typescript|scala)\b",
    re.IGNORECASE,
)
PYTHON_LOOK = re.compile(r"(?m)^\s*(def |import |from \w+ import |class \w+|for .+ in .+:|while .+:|if .+:|print\()")
FENCE = re.compile(r"```[\w+-]*\n?(.*?)```", re.DOTALL)

REWRITE = re.compile(
    r"^\W*(please\s+)?(rewrite|re-write|paraphrase|rephrase|reword|edit|correct|revise|fix|improve|proofread|"
    r"change|convert|transform|modify|make .{1,40} (more|less)|shorten|simplify|translate)\b",
    re.IGNORECASE,
)


def _normal(text: str) -> str:
    return " ".join(text.split()).strip("\"'“”")


def refers_to_missing_input(instruction: str, given: str, output: str = "") -> float:
    """1 when the instruction names material ("the following text", "this sentence", "given ...", "above")
    that is neither in the input field nor quoted or listed in the instruction itself."""
    if given.strip():
        return 0.0
    found = REFERS.search(instruction)
    if found is None:
        return 0.0
    return 0.0 if INLINE_MATERIAL.search(instruction) else 1.0


class _Parser:
    """Recursive descent over numbers, ``+ - * / ^``, unary minus and parentheses; no names, no calls."""

    def __init__(self, text: str) -> None:
        self.tokens = re.findall(r"\d+(?:\.\d+)?%?|[-+*/^()]", text)
        self.at = 0

    def _peek(self) -> str | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def _take(self) -> str:
        token = self.tokens[self.at]
        self.at += 1
        return token

    def parse(self) -> float | None:
        try:
            value = self._sum()
        except (IndexError, ZeroDivisionError, OverflowError, ValueError):
            return None
        return value if self.at == len(self.tokens) else None

    def _sum(self) -> float:
        value = self._product()
        while self._peek() in ("+", "-"):
            value = value + self._product() if self._take() == "+" else value - self._product()
        return value

    def _product(self) -> float:
        value = self._power()
        while self._peek() in ("*", "/"):
            if self._take() == "*":
                value *= self._power()
            else:
                value /= self._power()
        return value

    def _power(self) -> float:
        base = self._unary()
        if self._peek() == "^":
            self._take()
            exponent = self._power()
            if abs(exponent) > 64 or abs(base) > 1e6:
                raise OverflowError
            return base**exponent
        return base

    def _unary(self) -> float:
        if self._peek() == "-":
            self._take()
            return -self._unary()
        if self._peek() == "(":
            self._take()
            value = self._sum()
            if self._take() != ")":
                raise ValueError
            return value
        token = self._take()
        if not re.fullmatch(r"\d+(?:\.\d+)?%?", token):
            raise ValueError
        return float(token[:-1]) / 100 if token.endswith("%") else float(token)


def evaluate(expression: str) -> float | None:
    """The value of an arithmetic expression (``x``, ``×``, ``÷`` read as ``*`` and ``/``; thousands commas
    dropped), or None when it is not one."""
    text = expression.replace(",", "").replace("×", "*").replace("÷", "/")
    text = re.sub(r"(?<=[\d)\s])x(?=[\s(\d])", "*", text)
    if not re.fullmatch(r"[\d.%\s()+\-*/^]+", text) or not re.search(r"[\d%)]\s*[-+*/^]", text):
        return None
    return _Parser(text).parse()


def _number(text: str) -> float:
    text = text.replace(",", "")
    return float(text[:-1]) if text.endswith("%") else float(text)


def expected_value(prompt: str) -> float | None:
    """The value an arithmetic prompt asks for: an expression, a "sum/product/... of A and B", "P% of N",
    or the average of the numbers listed; None when there is none (or it is ambiguous)."""
    if not CALCULATE.search(prompt):
        return None
    for pattern, combine in WORD_PROBLEMS:
        found = pattern.search(prompt)
        if found:
            return combine(_number(found.group(1)), _number(found.group(2)))
    if AVERAGE.search(prompt):
        numbers = [_number(n) for n in NUMBER.findall(prompt.split(":", 1)[-1])]
        return sum(numbers) / len(numbers) if len(numbers) >= 2 else None
    values = [v for v in (evaluate(m.group(0)) for m in EXPRESSION.finditer(prompt)) if v is not None]
    return values[0] if len(values) == 1 else None


def _states(value: float, output: str) -> bool:
    for text in NUMBER.findall(output.replace("−", "-")):
        stated = float(text.replace(",", ""))
        if abs(stated - value) <= max(1e-6, 0.006 * abs(value)) or round(value, 2) == stated:
            return True
    return False


def arithmetic_checked(instruction: str, given: str, output: str) -> float:
    """+1 when the prompt asks for a value the parser computes and the response states it, -1 when it does
    not (a wrong number, or none), 0 when there is nothing to compute."""
    value = expected_value(f"{instruction}\n{given}")
    if value is None or value != value or abs(value) > 1e12:
        return 0.0
    return 1.0 if _states(value, output) else -1.0


def _count(word: str) -> int:
    return int(word) if word.isdigit() else NUMBER_WORDS[word.lower()]


def _items(output: str) -> int:
    lines = ITEM_LINE.findall(output)
    if len(lines) >= 2:
        return len(lines)
    rows = [line for line in output.splitlines() if line.strip()]
    if len(rows) >= 2:
        return len(rows)
    body = output.split(":", 1)[-1]
    parts = [p for p in re.split(r",|;|\band\b", body.rstrip(". ")) if p.strip()]
    return len(parts)


def count_constraint(instruction: str, given: str, output: str) -> float:
    """+1 when the response has the number of items ("list five ...") or words / sentences ("in 50 words",
    "in 2-3 sentences") the instruction asks for (words within 25 %, sentences within one), -1 when not,
    0 when the instruction asks for no count."""
    found = COUNT_UNITS.search(instruction)
    if found:
        low = _count(found.group(1))
        high = _count(found.group(2)) if found.group(2) else low
        unit = found.group(3).lower()
        if unit.startswith("word"):
            n = len(output.split())
            ok = (
                0.75 * low <= n <= 1.25 * high + 2
                if not re.search(r"\b(under|within|than|at most|up to)\s", found.group(0), re.I)
                else n <= 1.25 * high + 2
            )
        else:
            n = max(
                1,
                len(SENTENCE_END.findall(output.strip() + "."))
                - (0 if not output.strip().endswith((".", "!", "?")) else 1),
            )
            ok = low - 1 <= n <= high + 1
        return 1.0 if ok else -1.0
    found = COUNT_ITEMS.search(instruction)
    if found:
        wanted = _count(found.group(2))
        if wanted < 2 or wanted > 20:
            return 0.0
        return 1.0 if _items(output) == wanted else -1.0
    return 0.0


def _options(instruction: str, given: str) -> list[str] | None:
    lowered = f"{instruction}\n{given}".lower()
    for options in OPTION_PAIRS:
        if all(re.search(rf"\b{o}\b", lowered) for o in options[:2]) and re.search(
            rf"\b{options[0]}\b[^.?!\n]{{0,40}}\bor\b|\bor\b[^.?!\n]{{0,40}}\b{options[1]}\b", lowered
        ):
            return list(options)
    if CLASSIFY.search(instruction):
        named = NAMED_OPTIONS.search(instruction)
        if named and named.group(1).lower() not in ("not", "a", "the") and named.group(2).lower() not in ("not",):
            return [named.group(1).lower(), named.group(2).lower()]
    return None


def choice_constraint(instruction: str, given: str, output: str) -> float:
    """+1 when the instruction offers named options ("positive or negative", "true or false", "yes or no",
    "as X or Y") and the response uses one of them, -1 when it uses none, 0 when no options are offered."""
    options = _options(instruction, given)
    if not options or DIGIT_CODES.search(instruction) or ASKS_FOR_QUESTION.search(instruction):
        return 0.0
    words = re.findall(r"\w+", output.lower())
    stems = tuple(o[:-1] if o.endswith("s") and len(o) > 3 else o for o in options)
    return 1.0 if any(w.startswith(stems) for w in words) else -1.0


def python_source(output: str) -> str | None:
    """The Python code of a response (fenced blocks, else the whole response when it looks like Python)."""
    output = output.replace("\xa0", " ")
    fenced = FENCE.findall(output)
    if fenced:
        return "\n".join(fenced)
    start = PYTHON_LOOK.search(output)
    return output[start.start() :] if start else None


def code_parses(instruction: str, given: str, output: str) -> float:
    """+1 when a prompt asks for Python code and the response's code parses (:func:`ast.parse`, never run),
    -1 when it does not; 0 for other languages, for no code asked for, or no code given."""
    if not PYTHON_ASKED.search(instruction) or not CODE_ASKED.search(instruction) or OTHER_LANGUAGE.search(instruction):
        return 0.0
    source = python_source(output)
    if source is None:
        return 0.0
    try:
        ast.parse(source)
    except (SyntaxError, ValueError):
        return -1.0
    return 1.0


def rewrite_copy(instruction: str, given: str, output: str) -> float:
    """1 when a rewrite / edit / correct instruction's response is its material unchanged (the input, or
    the text quoted or after the colon in the instruction), else 0."""
    if not REWRITE.search(instruction) or not output.strip():
        return 0.0
    answer = _normal(output)
    material = [given] if given.strip() else []
    material += re.findall(r"[\"“](.+?)[\"”]", instruction)
    if ":" in instruction:
        material.append(instruction.split(":", 1)[1])
    return 1.0 if any(answer and answer == _normal(m) for m in material) else 0.0


CHECKS = {
    "refers_to_missing_input": refers_to_missing_input,
    "arithmetic_checked": arithmetic_checked,
    "count_constraint": count_constraint,
    "choice_constraint": choice_constraint,
    "code_parses": code_parses,
    "rewrite_copy": rewrite_copy,
}


def checks(instruction: str, given: str, output: str, names: tuple[str, ...] = tuple(CHECKS)) -> list[float]:
    """The checks ``names`` of one record (instruction, input, output), in that order."""
    return [CHECKS[name](instruction, given, output) for name in names]
