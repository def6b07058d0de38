"""Corpora and questions for deploy/local/bench-retrieval.sh.

  retrieval_corpus.py [OUT]     write OUT/pages.jsonl and OUT/questions.jsonl
                                (OUT defaults to .local/bench-retrieval)

Two corpora of different kinds, both public documentation that Debian packages:
  python  the standard library reference (python3.11-doc), one page per documented function,
          class, method, attribute or exception, and one per section's own prose
  man     C library and system call manual pages (manpages-dev, sections 2 and 3), one page each

A question is a page's one-line description asked in other words: a man page's NAME line or a
Python entry's first sentence, put in a question template, with some words swapped for synonyms.
The sentence is taken out of the page that is ingested, so no question is found verbatim. Each
question records its term overlap with its page (the share of its content terms that the page
contains), so that the set can be compared with real questions. Everything is seeded.
"""

import gzip
import html.parser
import json
import random
import re
import statistics
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SEED = 20261207
MAX_WORDS = 3000
# The platform cuts chunks of at most 254 word pieces overlapping by 32: about 180 words of prose.
CHUNK_TOKENS, CHUNK_OVERLAP = 254, 32
CHUNK_BUDGET = 10_000
QUESTIONS_PER_CORPUS = 250
MIN_OVERLAP = 0.2
MIN_PAGE_WORDS = 30

# NLTK's English list, hard-coded so that the benchmark's BM25 and the overlap figures agree.
STOP_WORDS = frozenset("""
a about above after again against ain all am an and any are aren as at be because been before
being below between both but by can couldn d did didn do does doesn doing don down during each
few for from further had hadn has hasn have haven having he her here hers herself him himself his
how i if in into is isn it its itself just ll m ma me mightn more most mustn my myself needn no nor
not now o of off on once only or other our ours ourselves out over own re s same shan she should
shouldn so some such t than that the their theirs them themselves then there these they this
those through to too under until up ve very was wasn we were weren what when where which while who
whom why will with won wouldn y you your yours yourself yourselves
""".split())

# A small, hand-written table of technical synonyms: the words a person asks with when they do not
# know the documentation's own. Verbs are swapped only where they lead the description (a "set"
# elsewhere is as likely a noun); the other words wherever they stand alone.
VERB_SYNONYMS = {
    "get": ["obtain", "retrieve", "fetch"], "obtain": ["get", "retrieve"], "retrieve": ["get", "fetch"],
    "remove": ["delete", "erase"], "delete": ["remove", "erase"], "create": ["make", "build"],
    "make": ["create", "build"], "set": ["assign", "configure"], "change": ["modify", "alter"],
    "modify": ["change", "alter"], "allocate": ["reserve"], "free": ["release"], "release": ["free"],
    "send": ["transmit"], "receive": ["accept"], "read": ["load"], "write": ["store", "output"],
    "convert": ["transform", "turn"], "compare": ["check"], "copy": ["duplicate"],
    "determine": ["find out", "work out"], "test": ["check"], "check": ["verify", "test"],
    "calculate": ["compute"], "compute": ["calculate"], "search": ["look for"], "find": ["locate"],
    "locate": ["find"], "terminate": ["end", "stop"], "stop": ["halt"], "start": ["begin", "launch"],
    "execute": ["run"], "run": ["execute"], "manipulate": ["handle", "manage"],
    "initialize": ["set up"], "register": ["record"], "add": ["append", "insert"], "append": ["add"],
    "insert": ["add"], "close": ["shut"], "print": ["display", "show"], "update": ["refresh"],
    "wait": ["block"], "return": ["give back"], "examine": ["inspect"], "duplicate": ["copy"],
}
SYNONYMS = {
    "directory": ["folder"], "directories": ["folders"], "string": ["text"], "strings": ["texts"],
    "number": ["count", "amount"], "integer": ["whole number"], "current": ["present"],
    "length": ["size"], "size": ["length"], "object": ["instance"], "value": ["item"],
    "values": ["items"], "list": ["sequence"], "position": ["offset"], "error": ["failure"],
    "name": ["identifier"], "new": ["fresh"], "empty": ["blank"], "specified": ["given"],
    "given": ["specified"], "argument": ["parameter"], "arguments": ["parameters"],
    "function": ["routine"], "attribute": ["property"], "exception": ["error"], "raised": ["thrown"],
    "dictionary": ["mapping"], "item": ["element"], "items": ["elements"], "element": ["item"],
    "default": ["standard"], "temporary": ["scratch"], "random": ["arbitrary"],
    "descriptor": ["handle"], "variable": ["setting"], "message": ["notice"], "process": ["program"],
    "processes": ["programs"], "user": ["account"], "contents": ["data"], "buffer": ["memory area"],
    "specific": ["particular"], "representation": ["form"], "absolute": ["full"],
    "maximum": ["largest"], "minimum": ["smallest"], "character": ["symbol"],
    "characters": ["symbols"], "encoding": ["charset"], "instance": ["object"], "type": ["kind"],
    "sequence": ["series"], "timeout": ["time limit"], "signal": ["notification"],
    "terminate": ["end"], "remove": ["delete"], "create": ["make"], "get": ["obtain"],
}
SWAP_PROBABILITY = 0.4

# Verbs that open a man page's description or a Python entry's first sentence.
VERBS = set("""
abort accept access add adjust advise allocate append apply arrange assign associate attach
bind block build calculate call cancel change check clear clone close compare compile compute
concatenate configure construct control convert copy count create decode define delete detach
determine disable discard display duplicate enable encode end ensure enter establish evaluate
examine execute exit extract fill find flush format free generate get give handle ignore initialize
initiate insert install load locate lock log look make manipulate map mark match merge modify
monitor move notify obtain open pack parse pass perform poll pop print process push put query
raise read receive reconstruct register release reload remove rename reopen replace report
reposition request reserve reset resize restore resume retrieve return reverse round run save
scan schedule search seek select send set setup shift shut sleep sort specify split start stop
store strip submit suspend swap switch synchronize take tell terminate test transfer translate
truncate try turn unlink unlock unmap unpack unregister update use wait wake walk wrap write yield
multiply destroy share splice cause manage tune unload enforce listen issue mount remap reboot
restart emulate operate reassociate commit sync arm unmount disassociate introduce correct encrypt
purge traverse grant deallocate export frobnicate predeclare invoke inspect deliver
""".split())


def tokens(text):
    """Lowercase alphanumeric terms without stop words, unstemmed: for overlap and BM25 alike."""
    return [t for t in re.findall(r"[a-z0-9]+", text.lower()) if t not in STOP_WORDS]


def estimated_chunks(text):
    """What the platform's chunker will make of `text`, roughly: word pieces are guessed from the
    words and punctuation a BERT tokenizer splits on, a quarter more for rare words."""
    pieces = len(re.findall(r"\w+|[^\w\s]", text)) * 1.25
    return max(1, -int(-(pieces - CHUNK_OVERLAP) // (CHUNK_TOKENS - CHUNK_OVERLAP)))


def capped(text):
    """The text's first MAX_WORDS words, line breaks kept."""
    if len(text.split()) <= MAX_WORDS:
        return text
    count, out = 0, []
    for line in text.split("\n"):
        n = len(line.split())
        if count + n > MAX_WORDS:
            out.append(" ".join(line.split()[: MAX_WORDS - count]))
            break
        out.append(line)
        count += n
    return "\n".join(out)


# --- The packages ----------------------------------------------------------------------------


def extracted(package, cache):
    """The package's files, downloaded with apt-get and unpacked with dpkg-deb (no install: the
    docker image's dpkg excludes /usr/share/doc and /usr/share/man)."""
    tree = cache / package
    if (tree / ".done").exists():
        return tree
    cache.mkdir(parents=True, exist_ok=True)
    for deb in cache.glob(f"{package}_*.deb"):
        deb.unlink()
    def download():
        return subprocess.run(["apt-get", "download", package], cwd=cache, capture_output=True, text=True,
                              timeout=600)
    got = download()
    if got.returncode != 0:
        # A machine that has never listed its sources finds no package by name.
        print(f"apt-get download {package} failed; running apt-get update", file=sys.stderr)
        subprocess.run(["apt-get", "update", "-q"], check=False, capture_output=True, timeout=600)
        got = download()
    debs = sorted(cache.glob(f"{package}_*.deb"))
    if got.returncode != 0 or not debs:
        sys.exit(f"could not download the Debian package {package}: {got.stderr.strip()[-400:]}")
    tree.mkdir(exist_ok=True)
    subprocess.run(["dpkg-deb", "-x", str(debs[-1]), str(tree)], check=True)
    (tree / ".done").write_text(debs[-1].name + "\n")
    return tree


# --- Python's library reference ---------------------------------------------------------------

BLOCKS = {"p", "div", "dt", "dd", "li", "pre", "h1", "h2", "h3", "h4", "h5", "tr", "table", "dl",
          "ul", "ol", "section", "blockquote", "br"}
VOID = {"br", "img", "hr", "input", "meta", "link", "col", "wbr", "area", "source"}
ENTRY_KINDS = {"function", "method", "class", "exception", "attribute", "data", "classmethod",
               "staticmethod", "property", "decorator"}
# Entries whose first sentence says what they do; an attribute's or a constant's rarely does.
QUESTION_KINDS = {"function", "method", "class", "exception", "classmethod", "staticmethod", "decorator"}


class Unit:
    """A page being read: a documented object (a `dl class="py ..."`) or a section's own prose."""

    def __init__(self, kind, ident):
        self.kind, self.id = kind, ident
        self.blocks, self.first_paragraph = [[]], None

    def text(self):
        return "\n".join(t for t in ("".join(b).strip() for b in self.blocks) if t)


class LibraryPage(html.parser.HTMLParser):
    """Splits one module's page into units. Text goes to the innermost open unit; a nested entry
    (a class's methods) is a page of its own, not part of its parent's."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.units, self.open = [], []
        # Open elements inside the main body: (tag, unit it opened, whether its text is skipped).
        self.stack = []
        self.skipping = 0
        self.paragraph = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if not self.stack:
            if tag == "div" and "body" in classes and a.get("role") == "main":
                self.stack.append((tag, None, False))
            return
        if tag in VOID:
            if tag == "br" and self.open:
                self.open[-1].blocks.append([])
            return
        skip = self.skipping > 0 or tag in ("script", "style") or (tag == "a" and "headerlink" in classes)
        unit = None
        if skip:
            pass
        elif tag == "section" and a.get("id"):
            unit = Unit("section", a["id"])
        elif tag == "dl" and len(classes) == 2 and classes[0] == "py" and classes[1] in ENTRY_KINDS:
            unit = Unit(classes[1], None)
        elif tag == "dt" and self.open and self.open[-1].kind != "section":
            if self.open[-1].id is None and a.get("id"):
                self.open[-1].id = a["id"]
        elif tag == "p" and self.open and self.paragraph is None and self.open[-1].first_paragraph is None:
            self.paragraph = self.open[-1]
        self.stack.append((tag, unit, skip))
        self.skipping += skip
        if unit:
            self.open.append(unit)
        if tag in BLOCKS and self.open:
            self.open[-1].blocks.append([])

    def handle_endtag(self, tag):
        # Sphinx's output is well formed; an end tag that matches nothing open is ignored.
        if tag in VOID or not any(t == tag for t, _, _ in self.stack):
            return
        while self.stack:
            t, unit, skip = self.stack.pop()
            self.skipping -= skip
            if unit is not None:
                self.open.remove(unit)
                self.units.append(unit)
            if t == "p" and self.paragraph is not None:
                self.paragraph.first_paragraph = "".join(self.paragraph.blocks[-1]).strip()
                self.paragraph = None
            if t == tag:
                break
        if tag in BLOCKS and self.open:
            self.open[-1].blocks.append([])

    def handle_data(self, data):
        if not self.stack or self.skipping or not self.open:
            return
        self.open[-1].blocks[-1].append(re.sub(r"\s+", " ", data))


def python_pages(html_dir):
    """Every unit of every module page, as {id, module, kind, title, text, sentence}."""
    pages = []
    for path in sorted(html_dir.glob("*.html")):
        parser = LibraryPage()
        parser.feed(path.read_text(encoding="utf-8", errors="replace"))
        for unit in parser.units:
            if not unit.id:
                continue
            text = unit.text()
            if unit.kind == "section":
                # Sections that only gather entries say little of their own.
                if len(text.split()) < 40:
                    continue
                first = None
            else:
                first = unit.first_paragraph
            title = unit.id if unit.kind != "section" else f"{path.stem}: {text.splitlines()[0][:120]}"
            pages.append({"id": f"python:{path.stem}#{unit.id}", "module": path.stem, "kind": unit.kind,
                          "title": title, "text": text, "paragraph": first})
    return pages


# --- Manual pages -----------------------------------------------------------------------------

SPECIAL = {"aq": "'", "dq": '"', "em": "-", "en": "-", "hy": "-", "lq": '"', "rq": '"', "oq": "'",
           "cq": "'", "mi": "-", "pl": "+", "mu": "x", "di": "/", "bu": "*", "co": "(C)", "rg": "(R)",
           "tm": "(TM)", "ga": "`", "ha": "^", "ti": "~", "rs": "\\", "ba": "|", "or": "|", "lt": "<",
           "gt": ">", "le": "<=", "ge": ">=", "ne": "!=", "eq": "=", "ua": "^", "da": "v", "->": "->",
           "<-": "<-", "sq": "[]", "de": " degrees", "ss": "ss", "at": "@", "sh": "#", "Do": "$",
           "dg": "+", "sc": "S", "ps": "P", "Eu": "EUR", "Po": "GBP", "12": "1/2", "14": "1/4"}


ESCAPE = re.compile(r"""\\(?:
    [fFsnkgm*$](?:\[[^\]]*\]|\(..|[+-]?\d|.)    # fonts, sizes, registers, strings: no text
  | [hvwlLoDbxXNRZCAB]'[^']*'                   # motions, widths, tests: no text
  | \[(?P<name>[^\]]*)\]                        # special characters, groff style
  | \((?P<old>..)                               # special characters, two letters
  | (?P<char>.)                                  # one-character escapes
)""", re.X)
CHARS = {"-": "-", "e": "\\", " ": " ", "~": " ", "0": " ", ".": ".", "'": "'", "`": "`", "\\": "\\",
         "t": " "}


def unescape(line):
    def one(m):
        if m.group("name") is not None:
            return SPECIAL.get(m.group("name"), "")
        if m.group("old") is not None:
            return SPECIAL.get(m.group("old"), "")
        if m.group("char") is not None:
            return CHARS.get(m.group("char"), "")
        return ""
    return ESCAPE.sub(one, line)


def macro_args(rest):
    """A macro's arguments, with roff's double quotes."""
    return [a[1:-1] if a.startswith('"') else a for a in re.findall(r'"[^"]*"?|\S+', rest)]


def roff_text(source):
    """Plain text of a man page: headings on their own lines, paragraphs joined, tables as rows."""
    out, para, in_table, table_format = [], [], False, False
    def flush():
        if para:
            out.append(" ".join(para))
            para.clear()
    lines = source.replace("\\\n", "").splitlines()
    for raw in lines:
        if raw.startswith(('.\\"', "'\\\"", '\\"')) or raw.strip() in (".", "'"):
            continue
        if in_table:
            if raw.startswith(".TE"):
                in_table = False
                continue
            if table_format:
                # The format lines end with a period; the rows follow.
                if raw.rstrip().endswith("."):
                    table_format = False
                continue
            if raw.startswith("."):
                name, _, rest = raw[1:].partition(" ")
                if name in ("BR", "IR", "RB", "RI", "BI", "IB", "B", "I"):
                    para.append("".join(macro_args(unescape(rest))) if name not in ("B", "I") else unescape(rest))
                continue
            cells = [unescape(c).replace("T{", "").replace("T}", "").strip() for c in raw.split("\t")]
            row = " ".join(c for c in cells if c and c not in ("_", "="))
            if row:
                para.append(row)
            continue
        if raw.startswith((".", "'")):
            name, _, rest = raw[1:].strip().partition(" ")
            rest = rest.strip()
            if name in ("SH", "SS"):
                flush()
                out.append(unescape(" ".join(macro_args(rest))))
            elif name in ("B", "I", "SM", "SB"):
                para.append(unescape(" ".join(macro_args(rest))))
            elif name in ("BR", "IR", "RB", "RI", "BI", "IB"):
                para.append(unescape("".join(macro_args(rest))))
            elif name in ("TP", "PP", "P", "LP", "IP", "HP", "sp", "br", "nf", "fi", "EX", "EE", "in", "RS", "RE"):
                flush()
                if name == "IP" and rest:
                    args = macro_args(rest)
                    if args and args[0] not in ("\\(bu", "*", "\\[bu]"):
                        para.append(unescape(args[0]))
            elif name == "TS":
                flush()
                in_table, table_format = True, True
            elif name in ("UR", "MT"):
                pass
            elif name in ("UE", "ME"):
                para.append(unescape(rest))
            # Anything else (.TH, .ad, .nh, .ft, .ds, .de, .if, .so ...) carries no text.
            continue
        text = unescape(raw).strip()
        if text:
            para.append(text)
        elif para:
            flush()
    flush()
    return "\n".join(l for l in (re.sub(r"\s+", " ", x).strip() for x in out) if l)


def man_pages(man_dir):
    """Every real page of sections 2 and 3 (Debian turns `.so` aliases into symlinks, which are
    skipped; a `.so` left in a file is skipped too)."""
    pages = []
    for path in sorted(list((man_dir / "man2").glob("*.gz")) + list((man_dir / "man3").glob("*.gz"))):
        if path.is_symlink():
            continue
        source = gzip.decompress(path.read_bytes()).decode("utf-8", errors="replace")
        if re.search(r"^\.so\s", source, re.M) and not re.search(r"^\.SH", source, re.M):
            continue
        text = roff_text(source)
        lines = text.splitlines()
        if not lines or lines[0] != "NAME":
            continue
        # NAME's line is `names - description`.
        names, _, description = lines[1].partition(" - ")
        name = path.name.removesuffix(".gz")
        rest = "\n".join(lines[2:])
        pages.append({"id": f"man:{name}", "module": name.split(".", 1)[1], "kind": "man", "title": name,
                      "names": names.strip(), "description": description.strip(), "body": rest})
    return pages


# --- Questions --------------------------------------------------------------------------------


def first_sentence(paragraph):
    """Up to the first full stop that ends a sentence: not one inside `os.path` or after "e.g"."""
    m = re.match(r"(.+?(?<!\be\.g)(?<!\bi\.e)(?<!\betc)(?<!\bvs)[.!?])(\s|$)", paragraph, re.S)
    return re.sub(r"\s+", " ", m.group(1)).strip() if m else None


def base_verb(word):
    w = word.lower().strip(",;:")
    for cand in (w, w[:-1] if w.endswith("s") else None, w[:-2] if w.endswith("es") else None,
                 w[:-3] + "y" if w.endswith("ies") else None):
        if cand and cand in VERBS:
            return cand
    return None


def swap_verb(verb, rng):
    if verb in VERB_SYNONYMS and rng.random() < SWAP_PROBABILITY:
        return rng.choice(VERB_SYNONYMS[verb])
    return verb


def reworded(text, rng):
    """Swaps some plain lowercase words of `text` for synonyms (never a part of `os.path` or
    `time()`), mending the article before a swapped word."""
    words, out = text.split(" "), []
    for i, word in enumerate(words):
        m = re.fullmatch(r"([a-z]+)([,;:]?)", word)
        if m and m.group(1) in SYNONYMS and rng.random() < SWAP_PROBABILITY:
            new = rng.choice(SYNONYMS[m.group(1)])
            # "text string" must not become "text text".
            if new not in (out[-1] if out else None, words[i + 1] if i + 1 < len(words) else None):
                word = new + m.group(2)
                if out and out[-1] in ("a", "an"):
                    out[-1] = "an" if word[0] in "aeiou" else "a"
        out.append(word)
    return " ".join(out)


def python_question(page, sentence, rng):
    """A question for a Python entry's first sentence, or None where no template fits."""
    kind = {"classmethod": "method", "staticmethod": "method"}.get(page["kind"], page["kind"])
    s = sentence.rstrip(".").strip()
    for lead in ("This function ", "This method ", "This class ", "This decorator "):
        s = s.removeprefix(lead)
    words = s.split()
    if len(words) < 4 or len(words) > 25:
        return None
    first, rest = words[0], reworded(" ".join(words[1:]), rng)
    if re.match(r"(Return|Returns) (True|true) (if|when|iff) ", s):
        cond = reworded(" ".join(words[3:]), rng)
        return rng.choice([f"How do I {swap_verb('check', rng)} whether {cond}?",
                           f"Which {kind} tells me if {cond}?", f"How can I {swap_verb('test', rng)} if {cond}?"])
    if first in ("Raised", "Raise") and words[1] in ("when", "if", "by"):
        return rng.choice([f"Which exception is raised {rest}?", f"What error do I get {rest}?"])
    if first in ("A", "An") and kind in ("class", "exception"):
        a = first.lower()
        return rng.choice([f"Which {kind} is {a} {rest}?", f"I am looking for {a} {rest}: which {kind}?"])
    verb = base_verb(first)
    if not verb or not first[0].isupper():
        return None
    if verb == "return":
        get = swap_verb("get", rng)
        return rng.choice([f"How do I {get} {rest}?", f"How can I {get} {rest}?", f"Which {kind} returns {rest}?"])
    verb = swap_verb(verb, rng)
    return rng.choice([f"How do I {verb} {rest}?", f"How can I {verb} {rest}?",
                       f"Which {kind} can I use to {verb} {rest}?", f"Is there a {kind} to {verb} {rest}?"])


def man_question(page, rng):
    d = re.sub(r"[;,.]+$", "", page["description"]).strip()
    words = d.split()
    if len(words) < 3:
        return None
    kind = "system call" if page["module"].startswith("2") else "library function"
    verbs = [base_verb(v) for v in words[0].split("/")]
    if all(verbs):
        lead = " or ".join(swap_verb(v, rng) for v in verbs) + ("," if words[0].endswith(",") else "")
        d = f"{lead} {reworded(' '.join(words[1:]), rng)}"
        return rng.choice([f"How do I {d}?", f"Which {kind} can I use to {d}?", f"What lets me {d}?"])
    d = reworded(d, rng)
    if page["module"] in ("3type", "3const", "3head"):
        return rng.choice([f"What is the {d}?", f"Which type or constant stands for {d}?"])
    return rng.choice([f"What do I use for {d}?", f"Which {kind} deals with {d}?",
                       f"I need {d}: which {kind} is it?"])


def overlap(question, text):
    terms = set(tokens(question))
    page = set(tokens(text))
    return len(terms & page) / len(terms) if terms else 0.0


def build(out):
    cache = out / "debs"
    rng = random.Random(SEED)
    doc = extracted("python3.11-doc", cache) / "usr/share/doc/python3.11/html/library"
    man = extracted("manpages-dev", cache) / "usr/share/man"
    if not doc.is_dir() or not man.is_dir():
        sys.exit(f"the packages' layout changed: {doc} or {man} is missing")

    # Man pages first, all of them: they are few and long. NAME's description is kept out of
    # the text; the names stay.
    candidates = []
    man_list = []
    for p in man_pages(man):
        text = capped(f"{p['names']}\n{p['body']}")
        man_list.append({"id": p["id"], "corpus": "man", "title": p["title"], "text": text})
        candidates.append(("man", p, p["description"]))
    budget = CHUNK_BUDGET - sum(estimated_chunks(p["text"]) for p in man_list)

    # Python: whole modules in a seeded order until the rest of the chunk budget is spent, so that
    # a function's neighbours (os.listdir beside os.scandir) are there to be confused with it.
    py_all = python_pages(doc)
    modules = sorted({p["module"] for p in py_all})
    rng.shuffle(modules)
    by_module = {}
    for p in py_all:
        by_module.setdefault(p["module"], []).append(p)
    py_list, chosen = [], []
    for module in modules:
        if budget <= 0:
            break
        for p in by_module[module]:
            sentence = first_sentence(p["paragraph"]) if p["paragraph"] else None
            text = p["text"]
            if sentence:
                text = text.replace(sentence, "", 1)
                text = re.sub(r"\n\s*\n", "\n", text).strip()
            text = capped(text)
            if len(text.split()) < 5:
                continue
            py_list.append({"id": p["id"], "corpus": "python", "title": p["title"], "text": text})
            budget -= estimated_chunks(text)
            # A page left with little more than its signature cannot be told from its neighbours.
            if sentence and len(text.split()) >= MIN_PAGE_WORDS and p["kind"] in QUESTION_KINDS:
                candidates.append(("python", p, sentence))
        chosen.append(module)

    # The platform takes a document whose content is already in the collection for that one.
    texts, unique = set(), []
    for p in man_list + py_list:
        if p["text"] not in texts:
            unique.append(p)
            texts.add(p["text"])
    pages = {p["id"]: p for p in unique}
    # Descriptions that several pages share have no one right page.
    seen = Counter(re.sub(r"\W+", " ", c[2].lower()).strip() for c in candidates)
    questions = {"man": [], "python": []}
    # One generator per corpus, so that a change to one corpus leaves the other's questions be.
    rngs = {corpus: random.Random(f"{SEED}:{corpus}") for corpus in questions}
    for corpus, p, source in candidates:
        if seen[re.sub(r"\W+", " ", source.lower()).strip()] > 1 or p["id"] not in pages:
            continue
        q = man_question(p, rngs[corpus]) if corpus == "man" else python_question(p, source, rngs[corpus])
        if not q or len(set(tokens(source))) < 3:
            continue
        o = overlap(q, pages[p["id"]]["text"])
        questions[corpus].append({"corpus": corpus, "page": p["id"], "question": q, "source": source,
                                  "overlap": round(o, 4)})
    kept = []
    for corpus, qs in questions.items():
        usable = [q for q in qs if MIN_OVERLAP <= q["overlap"] < 1.0]
        rngs[corpus].shuffle(usable)
        kept.extend(usable[:QUESTIONS_PER_CORPUS])
        print(f"{corpus}: {len(qs)} candidate questions, {len(usable)} within overlap "
              f"[{MIN_OVERLAP}, 1), {min(len(usable), QUESTIONS_PER_CORPUS)} kept", file=sys.stderr)

    out.mkdir(parents=True, exist_ok=True)
    with open(out / "pages.jsonl", "w") as f:
        for p in unique:
            f.write(json.dumps(p) + "\n")
    with open(out / "questions.jsonl", "w") as f:
        for i, q in enumerate(kept):
            f.write(json.dumps({"id": i, **q}) + "\n")
    stats = {"modules": len(chosen)}
    for corpus in ("python", "man"):
        ps = [p for p in pages.values() if p["corpus"] == corpus]
        os_ = [q["overlap"] for q in kept if q["corpus"] == corpus]
        stats[corpus] = {"pages": len(ps), "estimated_chunks": sum(estimated_chunks(p["text"]) for p in ps),
                         "questions": len(os_), **overlap_stats(os_)}
        print(f"{corpus}: {len(ps)} pages, ~{stats[corpus]['estimated_chunks']} chunks, {len(os_)} questions, "
              f"overlap mean {stats[corpus]['mean']:.2f} median {stats[corpus]['median']:.2f}", file=sys.stderr)
        print(histogram(os_), file=sys.stderr)
    (out / "corpus-stats.json").write_text(json.dumps(stats, indent=1))


def overlap_stats(values):
    if not values:
        return {"mean": 0.0, "median": 0.0, "histogram": []}
    bins = [0] * 5
    for v in values:
        bins[min(4, int(v * 5))] += 1
    return {"mean": statistics.fmean(values), "median": statistics.median(values), "histogram": bins}


def histogram(values):
    bins = overlap_stats(values)["histogram"]
    top = max(bins) if bins and max(bins) else 1
    return "\n".join(f"  {i / 5:.1f}-{(i + 1) / 5:.1f} {n:4d} {'#' * round(40 * n / top)}"
                     for i, n in enumerate(bins))


if __name__ == "__main__":
    if len(sys.argv) > 2 or (len(sys.argv) == 2 and sys.argv[1].startswith("-")):
        sys.exit(__doc__)
    build(Path(sys.argv[1]) if len(sys.argv) == 2 else ROOT / ".local/bench-retrieval")
