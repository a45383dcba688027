complete --keep-order --exclusive --command skiff --arguments "(_SKIFF_COMPLETE=fish skiff -- (commandline --current-process --tokenize --cut-at-cursor) (commandline --current-token))"
