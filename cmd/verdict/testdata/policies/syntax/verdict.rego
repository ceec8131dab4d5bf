package verdict

decision := "allow" if {
	input.x ==
}

reasons := set()
