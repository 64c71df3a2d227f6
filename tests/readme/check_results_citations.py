#!/usr/bin/python3
# SPDX-License-Identifier: BSD-3-Clause
"""The README and docs quote measurements with the results file they come from; this checks both halves.

  check_results_citations.py SOURCE_DIR

1. Every `bench/results/...` path cited in README.md or docs/*.md exists (a glob such as
   bench/results/torch-ddp-1gbit-p4.* must match a file).
2. In README.md, a sentence or table row that cites results files is checked figure by figure:
   every number written with a decimal point or thousands separators (1.03, 6.84 s, 11.2x, 83,952)
   must occur in one of the files that sentence or row cites, as written or without the
   separators. Code (`...`) and code blocks are not checked; integers (ranks, sizes, 1 Gbit/s) are
   set-up, not figures.
Exit status 0 when all hold, 1 with one line per problem otherwise.
"""
import glob
import os
import re
import sys

CITATION = re.compile(r"(?:\.\./)?(bench/results/[A-Za-z0-9_./*-]*[A-Za-z0-9_*])")
# 1.03, 0.5, 83,952, 1,500,000 (not part of a longer token such as a version 0.1.0 or 3.5.1).
FIGURE = re.compile(r"(?<![\w.,])(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+\.\d+)(?!\d|\.\d|,\d)")


def units(text):
    """Paragraphs and table rows of Markdown, with line numbers, outside ``` blocks."""
    block, start, fenced = [], 0, False
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            fenced = not fenced
            if block:
                yield start, " ".join(block)
                block = []
            continue
        if fenced:
            continue
        if line.startswith("|"):
            if block:
                yield start, " ".join(block)
                block = []
            yield number, line
        elif line.strip():
            if not block:
                start = number
            block.append(line)
        elif block:
            yield start, " ".join(block)
            block = []
    if block:
        yield start, " ".join(block)


def sentences(unit):
    """A paragraph's sentences (a table row is one); a decimal point is followed by a digit, not a space."""
    if unit.startswith("|"):
        return [unit]
    return re.split(r"(?<=[.!?;])\)?\s+(?=[A-Z(*`\[])", unit)


def cited_files(root, unit):
    """The files a unit cites, and the citations that name nothing. A folder counts as existing;
    a name pattern such as bench/results/cuda-<device>.txt is no citation."""
    files, missing = [], []
    for m in CITATION.finditer(unit):
        path = m.group(1)
        rest = re.match(r"[^\s`)\]]*", unit[m.end():]).group(0)
        if "<" in rest or "{" in rest:
            continue
        full = os.path.join(root, path)
        found = sorted(p for p in glob.glob(full) if os.path.isfile(p))
        if found:
            files.extend(found)
        elif not os.path.isdir(full):
            missing.append(path)
    return files, missing


def occurs(figure, texts):
    plain = figure.replace(",", "")
    forms = {figure, plain}
    return any(re.search(r"(?<![\d.])%s(?!\d)" % re.escape(f), t) for f in forms for t in texts)


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "."
    problems = []
    documents = ["README.md"] + sorted(os.path.relpath(p, root) for p in glob.glob(os.path.join(root, "docs", "*.md")))
    for doc in documents:
        with open(os.path.join(root, doc), encoding="utf-8") as f:
            text = f.read()
        for line, unit in units(text):
            for path in cited_files(root, unit)[1]:
                problems.append("%s:%d: cites %s, which does not exist" % (doc, line, path))
            if doc != "README.md":
                continue
            for sentence in sentences(unit):
                problems += check_figures(root, doc, line, sentence)
    for p in problems:
        print(p)
    checked = len(documents)
    print("%d problem(s) in %d documents" % (len(problems), checked))
    return 1 if problems else 0


def check_figures(root, doc, line, unit):
    """The figures of one sentence or table row that are in none of the files it cites."""
    problems = []
    files = cited_files(root, unit)[0]
    if files:
        contents = []
        for path in files:
            with open(path, encoding="utf-8", errors="replace") as f:
                contents.append(f.read())
        prose = re.sub(r"`[^`]*`", " ", unit)  # commands, paths, settings
        prose = re.sub(r"\]\([^)]*\)", "]", prose)  # link targets
        for figure in FIGURE.findall(prose):
            if not occurs(figure, contents):
                names = ", ".join(os.path.relpath(p, root) for p in files)
                problems.append("%s:%d: %s is not in the file(s) it cites (%s)" % (doc, line, figure, names))
    return problems


if __name__ == "__main__":
    sys.exit(main())
