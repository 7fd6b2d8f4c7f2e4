// Command etcd is a thin entry point around the etcd server's own main package,
// so that a pinned etcd release can be built from the Go module proxy.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
