package klavi

// FastAndLibrary reads b with fastPayment and with the JSON library, for the
// external tests that hold the sandbox's answers.
func FastAndLibrary(b []byte) (fast Payment, read bool, lib Payment, err error) {
	read = fastPayment(b, &fast)
	err = libraryPayment(b, &lib)
	return fast, read, lib, err
}
