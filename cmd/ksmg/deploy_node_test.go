package main

// withoutFlag returns args (flag, value pairs) without the pairs of flag.
func withoutFlag(args []string, flag string) []string {
	var out []string
	for i := 0; i+1 < len(args); i += 2 {
		if args[i] != flag {
			out = append(out, args[i], args[i+1])
		}
	}
	return out
}
