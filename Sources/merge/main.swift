import MergeCLI

MergeCommand.main()
