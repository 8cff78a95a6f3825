# shellcheck shell=bash
# Sourced by build-deb and build-rpm (from the top of the tree): what goes into a build,
# and a hash of it for incremental builds.

# Tracked files plus untracked, not ignored ones (what a clean clone holds once the work
# in progress is committed), NUL-separated, sorted; a tracked file deleted in the tree
# is left out. Outside a git checkout (an unpacked tarball): every file but build output.
list_sources() {
    if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        git ls-files -z --cached --others --exclude-standard
    else
        find . \( -name .git -o -name out -o -name '.venv*' -o -name __pycache__ \
            -o -name '*.egg-info' -o -name build -o -name dist -o -name '.*_cache' \
            -o -name .hypothesis \) -prune -o \( -type f -o -type l \) -printf '%P\0'
    fi |
        sort -z -u |
        while IFS= read -r -d '' path; do
            if [ -e "$path" ] || [ -L "$path" ]; then printf '%s\0' "$path"; fi
        done
}

# Copy the sources into directory $1 (created). The copy belongs to the user building and
# gets that user's umask, whoever owns the checkout: as root, kdumpd refuses a config file
# that is not root's or is group-writable, and the package builds check the shipped one.
copy_sources() {
    mkdir -p "$1"
    list_sources | tar -c --null -T - -f - |
        tar -x --no-same-owner --no-same-permissions -f - -C "$1"
}

# Paths, modes, symlink targets and contents of everything copied, plus extra words ($@).
inputs_hash() {
    {
        printf '%s\n' "$@"
        list_sources | while IFS= read -r -d '' path; do
            if [ -L "$path" ]; then
                printf 'L %s %s\n' "$path" "$(readlink "$path")"
            else
                printf 'F %s %s %s\n' "$path" "$(stat -c %a "$path")" \
                    "$(sha256sum < "$path" | cut -d' ' -f1)"
            fi
        done
    } | sha256sum | cut -d' ' -f1
}

# Debian's own tools and Python only: not a venv's, not pyenv's (CI has both on PATH).
clean_environment() {
    export PATH=/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin
    unset PYTHONPATH PYTHONHOME VIRTUAL_ENV PYENV_VERSION
    export LC_ALL=C.UTF-8
}
