package netpoll

// Advance drops the first n bytes from pieces, trimming a piece written in
// part: what is left to write after a write of n bytes.
func Advance(pieces [][]byte, n int) [][]byte {
	for len(pieces) > 0 && n >= len(pieces[0]) {
		n -= len(pieces[0])
		pieces = pieces[1:]
	}
	if n > 0 {
		pieces[0] = pieces[0][n:]
	}
	return pieces
}
