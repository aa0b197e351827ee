#!/usr/bin/env bash
# Fills fuzz/corpus/<target>/ with seed inputs: the real files of ../shared (images,
# checkpoints, the tokenizer's test strings), the repository's training configs, and the
# small hand-made seeds and regression inputs committed under fuzz/seeds and
# fuzz/regressions. The corpus folders are not committed (see .gitignore); the fuzzer adds
# what it finds to them.
#
#     fuzz/seed.sh            # seeds from $DIFFBIR_SHARED, else ../shared beside the repository
set -euo pipefail
fuzz="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$fuzz")"
shared="${DIFFBIR_SHARED:-$repo/../shared}"
fixtures="${DIFFBIR_FIXTURES:-$shared/fixtures}"
# Seeds larger than this slow every mutation down; the fuzzer grows inputs itself.
max_bytes=$((1024 * 1024))

targets=(image_decode checkpoint_open clip_tokenizer train_config model_config hub_response)

add() { # add TARGET FILE...: copy files (up to max_bytes) into the target's corpus
    local target="$1" file
    shift
    for file in "$@"; do
        [[ -f "$file" ]] || continue
        (($(stat -c %s "$file") <= max_bytes)) || continue
        cp -f "$file" "$fuzz/corpus/$target/$(sha1sum "$file" | cut -c1-16)"
    done
}

for target in "${targets[@]}"; do
    mkdir -p "$fuzz/corpus/$target"
    add "$target" "$fuzz"/seeds/"$target"/* "$fuzz"/regressions/"$target"/*
done

if [[ -d "$shared/images" ]]; then
    mapfile -t images < <(find "$shared/images" -type f | sort)
    add image_decode "${images[@]}"
else
    echo "seed.sh: no $shared/images; image_decode starts from fuzz/seeds only" >&2
fi

if [[ -d "$fixtures" ]]; then
    add checkpoint_open "$fixtures"/*.safetensors "$fixtures"/*.pth "$fixtures"/*.ckpt
    # The tokenizer fixture's test strings, one seed each.
    if command -v jq >/dev/null && [[ -f "$fixtures/clip_tokenizer.json" ]]; then
        i=0
        while IFS= read -r -d '' s; do
            printf '%s' "$s" >"$fuzz/corpus/clip_tokenizer/fixture-$i"
            i=$((i + 1))
        done < <(jq -j '.strings[] | (., "\u0000")' "$fixtures/clip_tokenizer.json")
    fi
else
    echo "seed.sh: no fixtures at $fixtures; checkpoint_open starts from fuzz/seeds only" >&2
fi

# The small legacy, zip and tar PyTorch files that burn's pytorch-reader ships with its
# tests, from the local cargo registry (present once the fuzz targets are built).
mapfile -t reader_data < <(find "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/pytorch-reader-*/src/tests/test_data \
    -type f 2>/dev/null | sort)
add checkpoint_open "${reader_data[@]}"

add train_config "$repo"/diffbir-train/configs/*.toml

for target in "${targets[@]}"; do
    printf '%-16s %5d seeds\n' "$target" "$(find "$fuzz/corpus/$target" -type f | wc -l)"
done
