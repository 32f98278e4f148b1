"""The local CLIP tokenizer numbers its tokens the same way in every process.

The ``tokenizers`` BPE trainer breaks ties in hash order, so building the vocabulary at each start gave a dozen
words new ids in each process: a resumed training run then read its text encoder's embeddings under the wrong ids.
"""

from __future__ import annotations

import json
import subprocess
import sys

from addp_agent.models.tokenizer import (
    DOMAIN_WORDS,
    build_tokenizer,
    build_vocab_and_merges,
    domain_vocab_and_merges,
    write_domain_vocab,
)

PROBE = """
import json
from addp_agent.models.tokenizer import build_tokenizer
tokenizer = build_tokenizer()
print(json.dumps([tokenizer.get_vocab(), tokenizer("the cat left of the car at it").input_ids]))
"""


def _build_in_a_new_process() -> list:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=120)
    return json.loads(done.stdout)


def test_every_process_builds_the_same_ids():
    first, second = _build_in_a_new_process(), _build_in_a_new_process()
    assert first == second
    assert first[0] == build_tokenizer().get_vocab()


def test_the_committed_vocabulary_is_what_the_trainer_learns_on_the_domain_words(tmp_path):
    """Guards DOMAIN_WORDS edits: the committed file must be regenerated (python -m addp_agent.models.tokenizer)."""
    vocab, merges = domain_vocab_and_merges()
    trained_vocab, trained_merges = build_vocab_and_merges()
    assert set(vocab) == set(trained_vocab) and set(merges) == set(trained_merges)
    assert sorted(vocab.values()) == list(range(len(vocab)))
    tokenizer = build_tokenizer()
    whole = [word for word in DOMAIN_WORDS if "-" not in word]  # CLIP splits at hyphens first
    assert all(len(tokenizer.tokenize(word)) == 1 for word in whole)
    written = write_domain_vocab(tmp_path / "vocab.json")
    assert set(json.loads(written.read_text(encoding="utf-8"))["vocab"]) == set(vocab)
