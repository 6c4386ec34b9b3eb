from nlpfit.cli import main

main()
