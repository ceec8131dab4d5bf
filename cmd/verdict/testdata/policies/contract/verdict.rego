package verdict

decision := "block" if input.x

reasons contains {"code": "x", "effect": "reject"} if input.x
