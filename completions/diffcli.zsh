#compdef diffcli

_diffcli_completion() {
  eval $(env _TYPER_COMPLETE_ARGS="${words[1,$CURRENT]}" _DIFFCLI_COMPLETE=complete_zsh diffcli)
}

compdef _diffcli_completion diffcli
