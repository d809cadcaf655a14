from taoremote.cli import main

main()
