"""Docstring prose (reStructuredText) as plain terminal text, for ``thinc-losses info``.

The docstrings are written once, for Sphinx-style readers and for
``docs/api.md`` (:mod:`thinc_losses_plus.apidocs` turns them into Markdown);
a terminal gets them without markup: no double backticks, no ``:class:``
roles, ``::`` literal blocks as indented text, paragraphs re-wrapped.

Example:
    >>> print(render('''The gradient is ``p - t``, see :class:`~thinc.api.Softmax`.
    ... It is exact::
    ...
    ...     grad = p - t
    ... '''))
    The gradient is p - t, see Softmax. It is exact:
    <BLANKLINE>
        grad = p - t
"""
import re
import textwrap
from typing import Callable, List, Optional, Tuple

WIDTH = 79
_ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj):`(~?)([^`]+)`")
_SENTENCE_END = re.compile(r"(?<=\.)\s+(?=[A-Z`(])")
_ITEM = re.compile(r"^(?:[-*]|\d+\.)\s+")


def fill(text: str, width: int = WIDTH, initial_indent: str = "", subsequent_indent: str = "") -> str:
    """``textwrap.fill`` that never splits a word: names and formulas stay whole."""
    return textwrap.fill(
        text,
        width,
        initial_indent=initial_indent,
        subsequent_indent=subsequent_indent,
        break_long_words=False,
        break_on_hyphens=False,
    )


def inline(text: str) -> str:
    """Inline markup removed: roles, ``literals``, **bold**, `interpreted text`.

    >>> inline("``n`` rows of :class:`~thinc_losses_plus.CTC` (**logits**)")
    'n rows of CTC (logits)'
    """
    text = _ROLE.sub(lambda m: m.group(2).rsplit(".", 1)[-1] if m.group(1) else m.group(2), text)
    text = text.replace("``", "")
    text = re.sub(r"\*\*([^*]+)\*\*", r"\1", text)
    return re.sub(r"(?<![\w`])`([^`]+)`(?![\w`])", r"\1", text)


def sentences(paragraph: str) -> List[str]:
    """A paragraph's sentences (split as :mod:`~thinc_losses_plus.catalog` splits them)."""
    flat = " ".join(paragraph.split())
    return [s for s in _SENTENCE_END.split(flat) if s]


Block = Tuple[str, object]  # ("para", str), ("item", str) or ("literal", [lines])


def blocks(text: str) -> List[Block]:
    """Split RST prose into paragraphs, list items and ``::`` literal blocks."""
    out: List[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        para = [line.strip()]
        i += 1
        while i < len(lines) and lines[i].strip() and not _ITEM.match(lines[i].strip()):
            if lines[i][:1].isspace() and not _ITEM.match(para[0]) and para[-1].endswith("::"):
                break
            para.append(lines[i].strip())
            i += 1
        out.append(("item" if _ITEM.match(para[0]) else "para", " ".join(para)))
        if para[-1].endswith("::"):
            block: List[str] = []
            while i < len(lines) and (not lines[i].strip() or lines[i][:1].isspace()):
                block.append(lines[i])
                i += 1
            body = textwrap.dedent("\n".join(block)).strip("\n")
            if body:
                out.append(("literal", body.splitlines()))
    return out


def render(
    text: str, *, width: int = WIDTH, indent: str = "", drop: Optional[Callable[[str], bool]] = None
) -> str:
    """Plain text of RST prose, wrapped to ``width``.

    drop: sentences for which it returns True are left out (with the literal
        block a dropped sentence introduces), e.g. one shown elsewhere.
    """
    out: List[str] = []
    skip_literal = False
    for kind, body in blocks(text):
        if kind == "literal":
            if not skip_literal:
                out.append("\n".join(indent + "    " + line if line.strip() else "" for line in body))
            skip_literal = False
            continue
        said = sentences(str(body))
        kept = [s for s in said if not (drop and drop(s))]
        skip_literal = bool(said) and said[-1] not in kept
        if not kept:
            continue
        prose = inline(" ".join(kept))
        if prose.endswith("::"):
            prose = prose[:-1]
        if kind == "item":
            marker = _ITEM.match(prose).group(0)
            out.append(
                fill(
                    prose[len(marker):], width, initial_indent=indent + marker, subsequent_indent=indent + " " * len(marker)
                )
            )
        else:
            out.append(fill(prose, width, initial_indent=indent, subsequent_indent=indent))
    return "\n\n".join(out)


def field(label: str, value: str, *, width: int = WIDTH, label_width: int = 0) -> str:
    """``Label: value`` with the value wrapped under itself; ``label_width`` is that of ``Label:``.

    >>> print(field("Shapes", "guesses (N, C); truths (N,)", width=24, label_width=8))
    Shapes:  guesses (N, C);
             truths (N,)
    """
    head = f"{label}:".ljust(max(label_width, len(label) + 1) + 1)
    return fill(inline(" ".join(value.split())), width, initial_indent=head, subsequent_indent=" " * len(head))
