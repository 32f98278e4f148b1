"""A small, real CLIP BPE tokenizer built locally (no download).

It keeps CLIP's byte-level alphabet, so any text tokenizes; words of the domain vocabulary
(shapes, colours, positions, relations, ordinals, common English) become single tokens.

The vocabulary and merges are committed (``domain_tokenizer.json``), not trained at each build: the ``tokenizers``
BPE trainer breaks ties between equally frequent pairs in hash order, so each process numbered a dozen words
(``of``, ``at``, ``it``, ``car``, ``cat``, ``dog``, ``dot``) differently, and a resumed training run fed its text
encoder's trained embeddings the wrong ids. :func:`build_vocab_and_merges` trains them again (same sets, tie order
aside); ``python -m addp_agent.models.tokenizer`` rewrites the file after :data:`DOMAIN_WORDS` changes.
"""

from __future__ import annotations

import json
from pathlib import Path

from transformers import CLIPTokenizer

DOMAIN_WORDS: tuple[str, ...] = tuple((  # noqa: SIM905 (one readable block of words)
    # articles, function words and relations
    "the a an of on in at to from with and or not no is are it its this that one two three"
    " left right top bottom middle center centre upper lower above below under over near next beside"
    " between behind front first second third fourth fifth sixth last closest farthest nearest"
    " biggest smallest largest big small large tiny little medium huge other object thing shape"
    # shapes and colours
    " circle circles square squares triangle triangles star stars diamond diamonds hexagon hexagons"
    " cross crosses ring rings rectangle ellipse heart pentagon dot"
    " red green blue yellow purple cyan white gray grey black orange pink brown magenta teal"
    " dark light bright pale"
    # everyday words for real expressions and corrections
    " person man woman child kid boy girl baby mom dad people guy lady player"
    " lap chair table car dog cat horse bus train truck bike bird cup bottle plate bowl"
    " shirt jacket hat glasses hair hand arm head leg background sky grass wall floor window door"
    " tree bed couch sofa tv laptop phone book food pizza cake umbrella bag sign"
    " wearing holding sitting standing looking walking"
    " segment mask paint only exclude except instead wrong"
    # Scenes-3D: solids, materials, sizes, camera-frame relations, ordinals, counts and group words
    " sphere spheres ball balls cube cubes block blocks cylinder cylinders cone cones objects things"
    " metal metallic shiny rubber matte mid-sized medium-sized camera closer farther further furthest"
    " leftmost rightmost seventh eighth ninth tenth four five six seven eight nine ten zero all both"
    " beige slate gray floor depth close far"
).split())


def _bytes_to_unicode() -> dict[int, str]:
    """CLIP/GPT-2's reversible byte → printable unicode map."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in codes), strict=True))


def build_vocab_and_merges(words: tuple[str, ...] = DOMAIN_WORDS) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP-format vocabulary and merges: the byte alphabet plus BPE merges trained on ``words``.

    Training BPE (rather than writing merges by hand) keeps the merge ranks consistent, so every
    domain word ends up as one token.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    alphabet = list(_bytes_to_unicode().values())
    byte_map = _bytes_to_unicode()
    corpus = ["".join(byte_map[b] for b in word.encode("utf-8")) for word in dict.fromkeys(words)]
    bpe = Tokenizer(models.BPE(end_of_word_suffix="</w>"))
    bpe.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    trainer = trainers.BpeTrainer(
        vocab_size=100_000, min_frequency=1, show_progress=False, initial_alphabet=alphabet,
        end_of_word_suffix="</w>", special_tokens=[],
    )
    bpe.train_from_iterator(corpus, trainer=trainer)
    state = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["merges"]]
    tokens: list[str] = alphabet + [symbol + "</w>" for symbol in alphabet]
    seen = set(tokens)
    for left, right in merges:
        if left + right not in seen:
            seen.add(left + right)
            tokens.append(left + right)
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {token: index for index, token in enumerate(tokens)}, merges


VOCABULARY_FILE = Path(__file__).with_name("domain_tokenizer.json")


def domain_vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The committed vocabulary and merges (the same in every process and on every machine)."""
    stored = json.loads(VOCABULARY_FILE.read_text(encoding="utf-8"))
    return dict(stored["vocab"]), [(left, right) for left, right in stored["merges"]]


def write_domain_vocab(path: Path = VOCABULARY_FILE) -> Path:
    """Train the vocabulary and merges on :data:`DOMAIN_WORDS` (:func:`build_vocab_and_merges`) and commit them."""
    vocab, merges = build_vocab_and_merges()
    text = json.dumps({"vocab": vocab, "merges": [list(pair) for pair in merges]}, ensure_ascii=False)
    path.write_text(text + "\n", encoding="utf-8")
    return path


def build_tokenizer(model_max_length: int = 32) -> CLIPTokenizer:
    """A CLIPTokenizer over the committed domain vocabulary (about 1k tokens)."""
    vocab, merges = domain_vocab_and_merges()
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)


if __name__ == "__main__":
    print(write_domain_vocab())
