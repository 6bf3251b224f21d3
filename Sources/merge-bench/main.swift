import MergeBench

MergeBench.main()
