# bm2 deploy: the remote side. Read by `sh -s` on each host; every value arrives as a
# positional argument, never as shell code, except the hooks, which are shell code by design
# and run with `sh -c`.
#
# sh -s -- ACTION PATH REPO REF KEEP FETCH_ALL ROLLBACK PRE_SETUP POST_SETUP PRE_DEPLOY
#           POST_DEPLOY ARG [NAME=VALUE ...]
#
# The whole script is one brace group: the shell reads all of it before running anything, so
# a hook that reads its stdin cannot eat the rest of the script (hooks get /dev/null anyway).
{
set -u
action=$1 path=$2 repo=$3 ref=$4 keep=$5 fetch_all=$6 rollback=$7
pre_setup=$8 post_setup=$9
shift 9
pre_deploy=$1 post_deploy=$2 arg=$3
shift 3
for var in "$@"; do export "$var"; done

case $path in
  "~/"*) path="$HOME/${path#"~/"}" ;;
  "~") path=$HOME ;;
esac
export SHARED="$path/shared" BM2_DEPLOY_PATH="$path"

fail() { echo "bm2 deploy: $*" >&2; exit 1; }

# hook NAME COMMAND DIR: runs COMMAND with sh -c in DIR; fails with its status.
hook() {
  [ -n "$2" ] || return 0
  echo "--> $1: $2"
  ( cd "$3" && sh -c "$2" ) </dev/null || { status=$?; echo "bm2 deploy: $1 failed (exit $status)" >&2; return "$status"; }
}

# The releases, newest first (their names sort by time).
releases() {
  [ -d "$path/releases" ] || return 0
  ls -1 "$path/releases" | grep -E '^[0-9]{4}-[0-9]{2}-[0-9]{2}T' | sort -r
}

current_release() {
  target=$(readlink "$path/current" 2>/dev/null) || return 0
  basename "$target"
}

# switch RELEASE: points current at releases/RELEASE, atomically where mv -T exists.
switch() {
  ln -sfn "releases/$1" "$path/.current.$$" || return 1
  mv -T "$path/.current.$$" "$path/current" 2>/dev/null || {
    rm -f "$path/.current.$$"
    ln -sfn "releases/$1" "$path/current"
  }
}

commit_of() { head -n 1 "$path/releases/$1/.bm2-release" 2>/dev/null; }

describe() {
  c=$(commit_of "$1")
  printf '%s %s %s\n' "$1" "$(printf '%s' "$c" | cut -c1-7)" "$(sed -n 2p "$path/releases/$1/.bm2-release" 2>/dev/null)"
}

setup() {
  mkdir -p "$path" || fail "cannot create $path"
  hook pre-setup "$pre_setup" "$path" || exit 1
  mkdir -p "$path/releases" "$path/shared/logs" "$path/shared/pids" || fail "cannot create the layout in $path"
  if [ -d "$path/source/.git" ]; then
    echo "--> $path/source exists: fetching"
    git -C "$path/source" fetch --all --tags --prune || fail "git fetch failed in $path/source"
  else
    echo "--> cloning $repo into $path/source"
    git clone -- "$repo" "$path/source" || fail "git clone of $repo failed"
  fi
  hook post-setup "$post_setup" "$path/source" || exit 1
  echo "--> setup done: $path"
}

deploy() {
  want=$1
  [ -d "$path/source/.git" ] || fail "$path is not set up: run \`bm2 deploy <file> <env> setup\` first"
  cd "$path/source" || fail "cannot enter $path/source"
  if [ "$fetch_all" = 1 ]; then
    git fetch --all --tags --prune --quiet || fail "git fetch failed"
  else
    git fetch origin --tags --prune --quiet || fail "git fetch failed"
  fi
  commit=$(git rev-parse --verify --quiet "refs/remotes/origin/$want^{commit}" 2>/dev/null ||
    git rev-parse --verify --quiet "$want^{commit}" 2>/dev/null) ||
    fail "unknown ref: $want (not a branch of origin, a tag or a commit)"
  # A name per release that sorts by time: UTC to the millisecond where date has %N.
  while :; do
    stamp=$(date -u +%Y-%m-%dT%H-%M-%S)
    ms=$(date -u +%N 2>/dev/null | cut -c1-3)
    case $ms in [0-9][0-9][0-9]) ;; *) ms=000 ;; esac
    name="$stamp-${ms}Z"
    [ -e "$path/releases/$name" ] || break
    sleep 1
  done
  release="$path/releases/$name"
  mkdir -p "$release" || fail "cannot create $release"
  git archive --format=tar "$commit" | tar -x -C "$release" || { rm -rf "$release"; fail "cannot copy $commit into $release"; }
  printf '%s\n%s\n%s\n' "$commit" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$want" > "$release/.bm2-release"
  echo "--> release $name: $want at $(printf '%s' "$commit" | cut -c1-7)"
  export BM2_DEPLOY_RELEASE="$release"
  if ! hook pre-deploy "$pre_deploy" "$release"; then
    rm -rf "$release"
    exit 1
  fi
  previous=$(current_release)
  switch "$name" || { rm -rf "$release"; fail "cannot point $path/current at $name"; }
  echo "--> current -> releases/$name"
  if ! hook post-deploy "$post_deploy" "$release"; then
    if [ "$rollback" = 1 ] && [ -n "$previous" ] && [ -d "$path/releases/$previous" ]; then
      switch "$previous" && echo "--> rolled back: current -> releases/$previous" >&2
    fi
    exit 1
  fi
  prune
}

prune() {
  n=0
  cur=$(current_release)
  for r in $(releases); do
    n=$((n + 1))
    if [ "$n" -gt "$keep" ] && [ "$r" != "$cur" ]; then
      rm -rf "$path/releases/$r" && echo "--> removed old release $r"
    fi
  done
}

revert() {
  steps=$1
  cur=$(current_release)
  [ -n "$cur" ] || fail "nothing is deployed in $path"
  found=0 n=0 target=
  for r in $(releases); do
    if [ "$found" = 1 ]; then
      n=$((n + 1))
      if [ "$n" -eq "$steps" ]; then target=$r; break; fi
    fi
    [ "$r" = "$cur" ] && found=1
  done
  [ -n "$target" ] || fail "no release $steps before the current one ($cur)"
  switch "$target" || fail "cannot point $path/current at $target"
  echo "--> current -> releases/$target ($(describe "$target" | cut -d' ' -f2))"
  export BM2_DEPLOY_RELEASE="$path/releases/$target"
  hook post-deploy "$post_deploy" "$path/releases/$target" || exit 1
}

case $action in
  setup) setup ;;
  deploy) deploy "$ref" ;;
  revert) revert "$arg" ;;
  list)
    cur=$(current_release)
    for r in $(releases); do
      if [ "$r" = "$cur" ]; then mark='*'; else mark=' '; fi
      printf '%s %s\n' "$mark" "$(describe "$r")"
    done
    ;;
  current)
    cur=$(current_release)
    [ -n "$cur" ] || fail "nothing is deployed in $path"
    describe "$cur"
    ;;
  previous)
    cur=$(current_release)
    prev=$(releases | grep -A1 -x -F -- "$cur" | sed -n 2p)
    [ -n "$prev" ] || fail "no release before the current one"
    describe "$prev"
    ;;
  exec)
    [ -d "$path/current" ] || fail "nothing is deployed in $path"
    cd "$path/current" && sh -c "$arg" </dev/null
    ;;
  *) fail "unknown action $action" ;;
esac
exit
}
