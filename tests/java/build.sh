#!/usr/bin/env bash
# Builds the Silt Java end-to-end test client against kafka-clients 3.x and 4.x.
#
#   tests/java/build.sh            # both versions
#   tests/java/build.sh 4          # just one
#
# For each version v: fetch deps with Maven into lib/<v>/ (skipped when
# lib/<v> was already populated from the current pom-<v>.xml), then compile
# SiltJavaClient.java with javac into classes/<v>/ (skipped when up to date).
# Run with:  java -cp 'tests/java/classes/<v>:tests/java/lib/<v>/*' SiltJavaClient ...
#
# Needs only a JDK (17+) and Maven. Prints one line per version on success;
# on failure prints the tool output to stderr and exits non-zero.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

versions=("$@")
if [[ ${#versions[@]} -eq 0 ]]; then
    versions=(3 4)
fi

mkdir -p lib classes
# Serialise concurrent runs (e.g. parallel test binaries) where flock exists.
if command -v flock >/dev/null 2>&1; then
    exec 9>lib/.build.lock
    flock 9
fi

tmp=""
cleanup() { if [[ -n "$tmp" ]]; then rm -rf "$tmp"; fi; }
trap cleanup EXIT

for v in "${versions[@]}"; do
    pom="pom-$v.xml"
    lib="lib/$v"
    cls="classes/$v"
    if [[ ! -f "$pom" ]]; then
        echo "build.sh: no $pom" >&2
        exit 2
    fi

    # ---- dependencies
    pom_sum="$(sha256sum "$pom" | cut -d' ' -f1)"
    if [[ ! -f "$lib/.pom.sha256" || "$(cat "$lib/.pom.sha256")" != "$pom_sum" ]] \
        || ! compgen -G "$lib/kafka-clients-*.jar" >/dev/null; then
        tmp="lib/.tmp-$v.$$"
        rm -rf "$tmp"
        if ! out="$(mvn -q -B -Dstyle.color=never -f "$pom" dependency:copy-dependencies \
            -DincludeScope=runtime -DoutputDirectory="$tmp" 2>&1)"; then
            printf '%s\n' "$out" >&2
            echo "build.sh: fetching dependencies for kafka-clients $v.x failed" >&2
            exit 1
        fi
        if ! compgen -G "$tmp/kafka-clients-*.jar" >/dev/null; then
            printf '%s\n' "$out" >&2
            echo "build.sh: maven did not produce kafka-clients jar in $tmp" >&2
            exit 1
        fi
        printf '%s\n' "$pom_sum" >"$tmp/.pom.sha256"
        rm -rf "$lib"
        mv "$tmp" "$lib"
        tmp=""
        rm -rf "$cls" # force recompile against the new jars
    fi
    jar="$(compgen -G "$lib/kafka-clients-*.jar" | head -n1)"
    kver="$(basename "$jar" .jar)"
    kver="${kver#kafka-clients-}"

    # ---- compile
    if [[ ! -f "$cls/SiltJavaClient.class" || SiltJavaClient.java -nt "$cls/SiltJavaClient.class" \
        || "$lib/.pom.sha256" -nt "$cls/SiltJavaClient.class" ]]; then
        tmp="classes/.tmp-$v.$$"
        rm -rf "$tmp"
        mkdir -p "$tmp"
        if ! out="$(javac --release 17 -encoding UTF-8 -Xlint:all,-options,-processing \
            -cp "$lib/*" -d "$tmp" SiltJavaClient.java 2>&1)"; then
            printf '%s\n' "$out" >&2
            echo "build.sh: javac against kafka-clients $kver failed" >&2
            exit 1
        fi
        rm -rf "$cls"
        mv "$tmp" "$cls"
        tmp=""
    fi

    echo "SiltJavaClient $v: kafka-clients $kver, run: java -cp 'tests/java/$cls:tests/java/$lib/*' SiltJavaClient"
done
