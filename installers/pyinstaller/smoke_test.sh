#!/usr/bin/env bash
# Smoke test of a built bundle, using nothing but the bundle's own executable (plus a Python with
# Pillow to draw the test photos): start-up, the main window rendered offscreen, import, people,
# the demo model, captioning, writing metadata into the files, and 2 training steps started the way
# the GUI starts them (`<exe> -m trainer ...`).
#
#   installers/pyinstaller/smoke_test.sh [BUNDLE_DIR] [PYTHON]
#     BUNDLE_DIR  the one-folder bundle (default: ./build-pyinstaller/dist/repic)
#     PYTHON      a Python with Pillow, only to draw photos (default: python3)
# Prints one line per step and "smoke test: N passed, 0 failed" at the end; exits 1 on the first failure.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
bundle="${1:-$root/build-pyinstaller/dist/repic}"
py="${2:-python3}"
exe="$bundle/repic"
[ -x "$exe" ] || exe="$bundle/repic.exe"
[ -x "$exe" ] || { echo "smoke_test: no executable in $bundle (build it with build.sh)" >&2; exit 1; }

work="$(mktemp -d)"
# SMOKE_KEEP_WORK=1 keeps the library, photos and logs for a look after a failure
[ -n "${SMOKE_KEEP_WORK:-}" ] && echo "work folder: $work" || trap 'rm -rf "$work"' EXIT
export HOME="$work/home" REPIC_CONFIG_DIR="$work/config" REPIC_CACHE_DIR="$work/cache"
export REPIC_LIBRARY="$work/lib.sqlite" QT_QPA_PLATFORM=offscreen HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1
unset XDG_DATA_HOME XDG_CONFIG_HOME XDG_CACHE_HOME PYTHONPATH PYTHONHOME
mkdir -p "$HOME"
passed=0
step() { echo "== $1"; }
ok() { passed=$((passed + 1)); echo "   ok: $1"; }
fail() { echo "   FAILED: $1" >&2; echo "smoke test: $passed passed, 1 failed"; exit 1; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

step "start-up"
t0=$(now); "$exe" --version > "$work/v.txt" || fail "--version"; t1=$(now)
grep -q '^repic ' "$work/v.txt" || fail "--version printed: $(cat "$work/v.txt")"
ok "$(cat "$work/v.txt") in $(secs "$t0" "$t1") s (first run); bundle $(du -sh "$bundle" | cut -f1)"

step "main window, offscreen"
t0=$(now); "$exe" gui --screenshot "$work/main.png" || fail "gui --screenshot"; t1=$(now)
size=$(wc -c < "$work/main.png")
[ "$size" -gt 5000 ] || fail "screenshot is only $size bytes"
ok "gui --screenshot: $size-byte PNG in $(secs "$t0" "$t1") s (start, render, exit)"
[ -n "${SMOKE_KEEP:-}" ] && cp "$work/main.png" "$SMOKE_KEEP"

step "import a folder"
mkdir -p "$work/photos"
"$py" - "$work/photos" <<'EOF' || fail "drawing photos needs Pillow in $py"
import sys
from PIL import Image, ImageDraw
for i in range(6):
    im = Image.new("RGB", (160, 120), ((50 * i) % 256, 120, 200 - 20 * i))
    ImageDraw.Draw(im).ellipse([40, 30, 90, 80], fill=(240, 190, 160))
    im.save(f"{sys.argv[1]}/p{i}.jpg", quality=90)
EOF
"$exe" import "$work/photos" > "$work/import.txt" || fail "import"
n=$("$exe" photos list --json | grep -c '"path"' || true)
[ "$n" = 6 ] || fail "expected 6 photos, the library lists $n"
ok "6 photos imported"

step "people and tags"
"$exe" concept add Anya --kind person --info "A girl with pink hair." --ref "$work/photos/p0.jpg" >/dev/null \
    || fail "concept add"
for i in 1 2 3 4 5; do "$exe" photo tag "$work/photos/p$i.jpg" Anya >/dev/null || fail "photo tag p$i"; done
ok "Anya with a reference and 5 tagged photos"

step "demo model and captions"
t0=$(now); "$exe" demo-model "$work/demo" >/dev/null || fail "demo-model"; t1=$(now)
ok "demo model built in $(secs "$t0" "$t1") s"
t0=$(now)
"$exe" caption --all --model "$work/demo" --json > "$work/caption.json" 2> "$work/caption.err" \
    || { cat "$work/caption.err" >&2; fail "caption"; }
t1=$(now)
captioned=$("$exe" status --json | tr -d ' \n' | grep -o '"captioned":[0-9]*' | head -n1 | cut -d: -f2)
[ "${captioned:-0}" -ge 5 ] || fail "captioned: ${captioned:-none} (want >= 5)"
# the demo model's cap (32 new tokens, not the 1,024 a real model gets) holds in the frozen app too
longest=$(grep -o '"new_tokens": *[0-9]*' "$work/caption.json" | grep -o '[0-9]*$' | sort -n | tail -n1)
[ -n "$longest" ] && [ "$longest" -le 32 ] || fail "demo captions of ${longest:-?} new tokens (cap: 32)"
ok "$captioned photos captioned with the demo model in $(secs "$t0" "$t1") s (at most $longest new tokens each)"

step "write metadata into the files"
"$exe" export "$work/photos/p1.jpg" "$work/photos/p2.jpg" --include-drafts --quiet > "$work/export.txt" \
    || { cat "$work/export.txt" >&2; fail "export"; }
"$exe" metadata show "$work/photos/p1.jpg" --json > "$work/meta.json" || fail "metadata show"
grep -q 'Anya' "$work/meta.json" || fail "p1.jpg's metadata does not name Anya: $(head -c 400 "$work/meta.json")"
ok "p1.jpg now names Anya in its metadata"

step "train 2 steps in a child process, as the GUI starts it"
"$exe" -m trainer dataset --concepts Anya > "$work/dataset.txt" || fail "-m trainer dataset"
t0=$(now)
"$exe" -m trainer --base "$work/demo" --concepts Anya --name smoke --device cpu --max-steps 2 --save-steps 2 \
    --num-generations 2 --grad-accum 1 --max-completion-length 8 --eval-max-new-tokens 8 --lora-r 4 \
    --lora-alpha 8 --max-pixels 3136 --json-progress > "$work/train.jsonl" 2> "$work/train.err" \
    || { tail -n 20 "$work/train.err" >&2; tail -n 3 "$work/train.jsonl" >&2; fail "training"; }
t1=$(now)
grep -q '"step": *2' "$work/train.jsonl" || fail "no step 2 in the progress stream: $(tail -n 3 "$work/train.jsonl")"
"$exe" train adapters list > "$work/adapters.txt" || fail "train adapters list"
grep -q smoke "$work/adapters.txt" || fail "adapter 'smoke' not listed: $(cat "$work/adapters.txt")"
ls "$work/lib-files/adapters/smoke/"*.safetensors >/dev/null 2>&1 || ls -R "$work"/lib-files/adapters >&2
ok "2 GRPO steps in $(secs "$t0" "$t1") s; adapter 'smoke' registered"

echo "smoke test: $passed passed, 0 failed"
