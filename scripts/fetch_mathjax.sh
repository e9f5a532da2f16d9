#!/usr/bin/env bash
# Fetch MathJax 3 from the npm registry into .mathjax/ (git-ignored) for offline maths in the
# built book (book/_ext/offline_mathjax.py copies it into _build/html/_static/mathjax).
# npm checks the package's integrity hash against the registry's.
set -euo pipefail
cd "$(dirname "$0")/.."
version=3.2.2
if [ -f .mathjax/package/package.json ] && grep -q "\"version\": \"$version\"" .mathjax/package/package.json; then
  exit 0
fi
rm -rf .mathjax && mkdir -p .mathjax
(cd .mathjax && npm pack --silent "mathjax@$version" >/dev/null && tar xzf "mathjax-$version.tgz" && rm "mathjax-$version.tgz")
echo "MathJax $version in .mathjax/package/es5"
