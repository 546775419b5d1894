module ethwatch.test/pause

go 1.24
