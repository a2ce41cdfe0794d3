print("cellprovd")
