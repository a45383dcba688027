
set edit:completion:arg-completer[skiff] = { |@words|
    var index = (count $words)
    set index = (- $index 1)

    put (env _CLAP_IFS="\n" _CLAP_COMPLETE_INDEX=(to-string $index) _SKIFF_COMPLETE="elvish" skiff -- $@words) | to-lines
}

