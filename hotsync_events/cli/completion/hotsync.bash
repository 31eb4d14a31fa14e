# Bash completion for hotsync_events: config, db, signal-event and hotsync.
#
# Install (one of):
#   source <(config __complete --script)                      # this shell only
#   config __complete --script > /etc/bash_completion.d/hotsync  # every login shell
#
# Keys, props, allowed values, database names and event names are asked of `config __complete CMD LINE`,
# which reads the database and the schema under the root (--root DIR in the line, else $HOTSYNC_ROOT,
# else /) and prints the words that fit, one a line. `__dirs__` means: complete a directory.

_hotsync_complete() {
    local cur=${COMP_WORDS[COMP_CWORD]}
    local line=${COMP_LINE:0:COMP_POINT}
    local helper=config out
    COMPREPLY=()
    # prefer the `config` beside the command being completed (same venv or install)
    case ${COMP_WORDS[0]} in
        */*) [[ -x ${COMP_WORDS[0]%/*}/config ]] && helper=${COMP_WORDS[0]%/*}/config ;;
    esac
    out=$(command "$helper" __complete "${COMP_WORDS[0]##*/}" "$line" 2>/dev/null) || return 0
    if [[ $out == __dirs__ ]]; then
        local IFS=$'\n'
        COMPREPLY=($(compgen -d -- "$cur"))
        return 0
    fi
    local IFS=$'\n'
    COMPREPLY=($out)
    # bash cut the word at a ':' or '=' (COMP_WORDBREAKS): it replaces only what follows, so drop the
    # part before it from the candidates (localhost:25 is offered as 25 after "localhost:")
    local whole=${line##*[[:space:]]} head=""
    [[ $whole == *:* && $COMP_WORDBREAKS == *:* ]] && head=${whole%:*}:
    [[ $whole == *=* && $COMP_WORDBREAKS == *=* && ${whole%=*}= == *"$head"* ]] && head=${whole%=*}=
    if [[ -n $head && ${#COMPREPLY[@]} -gt 0 ]]; then
        COMPREPLY=("${COMPREPLY[@]#"$head"}")
    fi
    return 0
}

complete -F _hotsync_complete config db signal-event hotsync
