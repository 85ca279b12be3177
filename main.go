// Command kaudit manages the Kubernetes API server's audit policy as code: the manager merges
// AuditPolicyModules into revisions, the agent rolls them out on control-plane nodes, and the
// offline subcommands render, lint, explain and simulate policies.
package main

import (
	"os"

	"github.com/kaudit/kaudit/cmd"
)

func main() {
	os.Exit(cmd.Execute())
}
