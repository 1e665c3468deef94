from facepriv.cli import main

main()
