package verdict
default decision:="allow"
reasons := set()
