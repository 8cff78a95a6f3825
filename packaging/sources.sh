# Sourced by build-deb and build-rpm (from the top of the tree): what goes into a build,
# and a hash of it for incremental builds.

# Tracked files plus untracked, not ignored ones (what a clean clone holds once the work
# in progress is committed), NUL-separated, sorted; a tracked file deleted in the tree
# is left out.
list_sources() {
    git ls-files -z --cached --others --exclude-standard |
        sort -z -u |
        while IFS= read -r -d '' path; do
            if [ -e "$path" ] || [ -L "$path" ]; then printf '%s\0' "$path"; fi
        done
}

# Copy the sources into directory $1 (created).
copy_sources() {
    mkdir -p "$1"
    list_sources | tar -c --null -T - -f - | tar -x -f - -C "$1"
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
