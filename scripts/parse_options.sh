#!/usr/bin/env bash
# Kaldi/ESPnet-style command-line option parser, meant to be *sourced* by a script
# after it has set default values for its options:
#
#     stage=1
#     nj=4
#     force=false
#     help_message="Usage: $0 [options] ..."
#     . ../../scripts/parse_options.sh || exit 1
#
# Every option `--some-name VALUE` / `--some_name VALUE` / `--some_name=VALUE` sets the
# shell variable `some_name` (dashes become underscores).  The variable must already
# exist (that is how a typo is caught): an unknown option is an error.
# A variable whose default is `true` or `false` is a boolean: its option may be given
# without a value (`--force` == `--force true`), and only true/false are accepted.
# `--config FILE` sources FILE (lines `name=value`) before the remaining options.
# `--help` / `-h` prints "$help_message" and exits 0.
# Parsing stops at the first argument that does not start with `--`, or after `--`;
# the remaining positional arguments are left in "$@".

__po_die() { echo "$0: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h)
      if [ -n "${help_message:-}" ]; then printf '%s\n' "$help_message"; else echo "No help found." >&2; fi
      exit 0 ;;
    --) shift; break ;;
    --config|--config=*)
      if [ "$1" = "--config" ]; then
        [ $# -ge 2 ] || __po_die "option --config needs a file"
        __po_cfg=$2; shift 2
      else
        __po_cfg=${1#--config=}; shift
      fi
      [ -f "$__po_cfg" ] || __po_die "config file '$__po_cfg' not found"
      # shellcheck disable=SC1090
      . "$__po_cfg" || __po_die "failed to source config file '$__po_cfg'"
      ;;
    --*)
      __po_arg=${1#--}
      __po_has_value=false
      if [ "${__po_arg#*=}" != "$__po_arg" ]; then
        __po_value=${__po_arg#*=}; __po_arg=${__po_arg%%=*}; __po_has_value=true
      fi
      __po_name=${__po_arg//-/_}
      case "$__po_name" in
        ''|[0-9]*|*[!A-Za-z0-9_]*) __po_die "invalid option '$1'" ;;
      esac
      # the variable must exist (set -u safe test)
      if [ -z "${!__po_name+x}" ]; then
        __po_die "invalid option '--$__po_arg' (no variable '$__po_name' to set)"
      fi
      __po_old=${!__po_name}
      if ! $__po_has_value; then
        if [ "$__po_old" = "true" ] || [ "$__po_old" = "false" ]; then
          if [ $# -ge 2 ] && { [ "$2" = "true" ] || [ "$2" = "false" ]; }; then
            __po_value=$2; shift 2
          else
            __po_value=true; shift
          fi
        else
          [ $# -ge 2 ] || __po_die "option '--$__po_arg' needs a value"
          __po_value=$2; shift 2
        fi
      else
        shift
      fi
      if [ "$__po_old" = "true" ] || [ "$__po_old" = "false" ]; then
        if [ "$__po_value" != "true" ] && [ "$__po_value" != "false" ]; then
          __po_die "option '--$__po_arg' takes true or false, got '$__po_value'"
        fi
      fi
      printf -v "$__po_name" '%s' "$__po_value"
      ;;
    *) break ;;
  esac
done

unset __po_arg __po_name __po_value __po_old __po_has_value __po_cfg
true
