package netlab

import (
	"os"
	"path/filepath"
	"testing"
)

// A stopped router leaves nothing behind: its configuration and log folder
// go with it (they piled up in /tmp, one per BGP test run).
func TestBGPRouterStopRemovesItsFiles(t *testing.T) {
	lab := ForTest(t, "bgpt")
	r, err := lab.StartBGPRouter("client", 64512, ClientIP, BGPPeer{Addr: NodeIP, ASN: 64513})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(r.log)
	if _, err := os.Stat(filepath.Join(dir, "gobgpd.toml")); err != nil {
		t.Fatalf("the router's configuration: %v", err)
	}
	r.Stop()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("%s is left after Stop (%v)", dir, err)
	}
}
