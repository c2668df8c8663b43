#!/usr/bin/env python3
"""Trains a SentencePiece BPE tokenizer on the training split of a text file, offline, and writes
the whole text as a token file train_lm reads (train_lm --tokens FILE --vocab N).

  tokenize_bpe.py --input corpus.txt --vocab 1024 --out-dir DIR [--format raw|llmc]

The training split is the first 90% of the text's bytes, as train_lm splits byte-level data (cut at
the last newline before that point); the tokenizer never sees the held-out tail. The token file
holds the training split's tokens followed by the tail's, little-endian uint16: raw (as nanoGPT's
train.bin) or behind llm.c's 1024-byte header (magic 20240520, version 1, count). train_lm holds
out the last 10% of the tokens, which starts within a few tokens of the same place.

Lines are encoded one by one; each newline becomes SentencePiece's byte piece <0x0A> (the
tokenizer is trained with byte fallback, so any byte has a piece and nothing is lost).

Writes DIR/tokenizer.model (SentencePiece; decode with it), DIR/tokens.bin and DIR/tokens.json
(vocabulary, token counts, split). Needs python3-sentencepiece (scripts/install-deps.sh); run with
the project's interpreter: "$(scripts/pquant_python.sh)" scripts/tokenize_bpe.py ...
"""
import argparse
import json
import os
import struct
import sys
import tempfile

try:
    import sentencepiece as spm
except ImportError:
    print("tokenize_bpe.py: needs SentencePiece (Debian: python3-sentencepiece; run "
          "scripts/install-deps.sh and use \"$(scripts/pquant_python.sh)\")", file=sys.stderr)
    sys.exit(1)


def fail(msg):
    print("tokenize_bpe.py: " + msg, file=sys.stderr)
    sys.exit(1)


def write_atomic(path, data):
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".tmp.")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def encode(sp, text, newline_id):
    ids = []
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if line:
            ids.extend(sp.encode(line))
        if i + 1 < len(lines):
            ids.append(newline_id)
    return ids


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", required=True, help="UTF-8 text file")
    p.add_argument("--vocab", type=int, default=1024, help="vocabulary size (> 260, <= 65536)")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--format", choices=["raw", "llmc"], default="raw")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    if not 260 < a.vocab <= 65536:
        fail(f"--vocab must be in (260, 65536] (256 byte pieces + specials fit below it), got {a.vocab}")
    try:
        with open(a.input, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        fail(f"cannot read '{a.input}' as UTF-8 text: {e}")
    os.makedirs(a.out_dir, exist_ok=True)
    cut = int(len(text.encode("utf-8")) * 0.9)
    head = text.encode("utf-8")[:cut].decode("utf-8", errors="ignore")
    nl = head.rfind("\n")
    split = nl + 1 if nl > 0 else len(head)
    train, val = text[:split], text[split:]
    if not train.strip() or not val.strip():
        fail(f"'{a.input}' is too short for a training and a held-out part")
    with tempfile.TemporaryDirectory() as tmp:
        train_file = os.path.join(tmp, "train.txt")
        with open(train_file, "w", encoding="utf-8") as f:
            f.write(train)
        prefix = os.path.join(tmp, "tokenizer")
        spm.SentencePieceTrainer.train(
            input=train_file, model_prefix=prefix, vocab_size=a.vocab, model_type="bpe",
            character_coverage=1.0, byte_fallback=True, normalization_rule_name="identity",
            num_threads=a.threads, minloglevel=2, bos_id=-1, eos_id=-1, unk_id=0,
            max_sentence_length=1 << 16)
        with open(prefix + ".model", "rb") as f:
            model_bytes = f.read()
    sp = spm.SentencePieceProcessor(model_proto=model_bytes)
    newline_id = sp.piece_to_id("<0x0A>")
    train_ids = encode(sp, train, newline_id)
    val_ids = encode(sp, val, newline_id)
    ids = train_ids + val_ids
    if max(ids) >= a.vocab or max(ids) > 65535:
        fail(f"internal: token id {max(ids)} is not below the vocabulary {a.vocab}")
    body = struct.pack(f"<{len(ids)}H", *ids)
    if a.format == "llmc":
        header = struct.pack("<256i", 20240520, 1, len(ids), *([0] * 253))
        body = header + body
    write_atomic(os.path.join(a.out_dir, "tokenizer.model"), model_bytes)
    write_atomic(os.path.join(a.out_dir, "tokens.bin"), body)
    meta = {"input": os.path.basename(a.input), "vocab": a.vocab, "format": a.format,
            "tokens": len(ids), "train_tokens": len(train_ids), "heldout_tokens": len(val_ids),
            "train_bytes": len(train.encode("utf-8")), "bytes_per_token": len(text.encode("utf-8")) / len(ids)}
    write_atomic(os.path.join(a.out_dir, "tokens.json"), (json.dumps(meta) + "\n").encode())
    # Round trip: decoding gives the text back.
    back = "\n".join(sp.decode(encode(sp, line, newline_id)) for line in val.split("\n")[:50])
    if back != "\n".join(val.split("\n")[:50]):
        fail("internal: decoding the held-out tail does not give the text back")
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
