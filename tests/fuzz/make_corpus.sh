#!/usr/bin/env bash
# Regenerates the seed corpus in tests/fuzz/corpus/: tiny valid files made with train_lm and
# generate --export (one per variant), the configuration JSON they hold, and hand-made edge cases.
# Usage: tests/fuzz/make_corpus.sh BIN_DIR   (BIN_DIR holds train_lm/train_lm and generate/generate,
#        e.g. build/release/examples). Keep the corpus small: it is committed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="$(cd "$1" && pwd)"
corpus="$here/corpus"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
rm -rf "$corpus"
mkdir -p "$corpus/model_loader" "$corpus/checkpoint" "$corpus/config"

tiny=(--d-model 8 --layers 1 --heads 2 --d-ff 16 --context 8 --batch 2 --steps 2 --warmup 1
      --corpus-bytes 4000 --seed 3 --log-every 1)
for v in pquant bitnet bitnet158 fp; do
  extra=()
  [[ $v == pquant ]] && extra=(--experts 2 --r 4)
  "$bin/train_lm/train_lm" --variant "$v" "${extra[@]}" "${tiny[@]}" --save "$tmp/$v.ckpt" >/dev/null
  "$bin/generate/generate" --export "$tmp/$v.ckpt" --model "$corpus/model_loader/$v.safetensors" >/dev/null 2>&1
done
cp "$tmp/pquant.ckpt" "$corpus/checkpoint/pquant.ckpt"
cp "$tmp/bitnet.ckpt" "$corpus/checkpoint/bitnet.ckpt"

python3 - "$corpus" "$tmp" <<'PY'
import json, struct, sys, os
corpus, tmp = sys.argv[1], sys.argv[2]

def header(path):
    b = open(path, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    return json.loads(b[8:8 + n]), b[8 + n:]

def write(d, name, data):
    open(os.path.join(corpus, d, name), 'wb').write(data if isinstance(data, bytes) else data.encode())

def st(h, body=b''):  # a safetensors file from a header dict (or raw header text) and a body
    t = h if isinstance(h, str) else json.dumps(h)
    return struct.pack('<Q', len(t)) + t.encode() + body

# Configuration JSON: the packed model's and train_lm's, as the files hold them.
config_key = next(k for k in ('pquant.structure', 'pquant.config')
                  if k in header(os.path.join(corpus, 'model_loader', 'fp.safetensors'))[0]['__metadata__'])
for v in ('pquant', 'fp'):
    h, _ = header(os.path.join(corpus, 'model_loader', v + '.safetensors'))
    write('config', v + '_model.json', h['__metadata__'][config_key])
    h, _ = header(os.path.join(tmp, v + '.ckpt'))
    write('config', v + '_train_lm.json', h['__metadata__']['pquant.meta'])
c = json.loads(open(os.path.join(corpus, 'config', 'pquant_model.json')).read())
write('config', 'huge_sizes.json', json.dumps(dict(c, vocab=2**24, d_model=2**20, context=2**24)))
write('config', 'wrong_types.json', json.dumps(dict(c, norm_eps=True, vocab="1", d_model=-64)))
write('config', 'duplicate_key.json', '{"layers": 1, "layers": 2}')
write('config', 'not_object.json', '[1, 2, 3]')

# Model files: edge cases of the container and of the model inside it.
write('model_loader', 'empty', b'')
write('model_loader', 'length_only', struct.pack('<Q', 0))
write('model_loader', 'length_too_big', struct.pack('<Q', 2**63) + b'{}')
write('model_loader', 'empty_header', st('{}'))
write('model_loader', 'nul_padded', st('{}' + '\0' * 6))
write('model_loader', 'duplicate_tensor', st('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
                                             '"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', b'\0' * 4))
write('model_loader', 'overlap', st({'a': {'dtype': 'F32', 'shape': [2], 'data_offsets': [0, 8]},
                                     'b': {'dtype': 'F32', 'shape': [1], 'data_offsets': [4, 8]}}, b'\0' * 8))
write('model_loader', 'shape_overflow', st({'a': {'dtype': 'F32', 'shape': [2**32, 2**32, 4],
                                                  'data_offsets': [0, 0]}}))
h, body = header(os.path.join(corpus, 'model_loader', 'pquant.safetensors'))
cfg = json.loads(h['__metadata__'][config_key])
h2 = dict(h); h2['__metadata__'] = dict(h['__metadata__'], **{config_key: json.dumps(dict(cfg, vocab=2**24, context=2**24))})
write('model_loader', 'pquant_config_lies', st(h2, body))

# Checkpoints: foreign and retired formats.
write('checkpoint', 'retired_format', b'PQCKPT01' + b'\0' * 24)
write('checkpoint', 'packed_model', open(os.path.join(corpus, 'model_loader', 'fp.safetensors'), 'rb').read())
PY
du -sh "$corpus"
