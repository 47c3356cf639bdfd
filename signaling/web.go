package signaling

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed web
var webFiles embed.FS

// webApp serves the browser app embedded in the binary.
func webApp() http.Handler {
	sub, err := fs.Sub(webFiles, "web")
	if err != nil {
		panic(err) // the embed pattern guarantees the folder exists
	}
	return http.FileServerFS(sub)
}
