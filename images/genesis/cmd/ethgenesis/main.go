// Command ethgenesis is the tool of ethwatch's local genesis image (images/genesis): the
// contract of the ethereum-genesis-generator image that charts/eth-enclave's genesis and
// validator-keys Jobs use, for geth and Prysm participants, built from Prysm's own packages.
//
// Layout:
//   - genesis.go: `ethgenesis genesis` (run by /work/entrypoint.sh all) writes the execution
//     genesis (genesis.json), the consensus chain config (config.yaml), the genesis state
//     (genesis.ssz) and the deposit-contract and validators-root files into /data/metadata, from
//     the templates in /config (expanded with values.env, template.go).
//   - keystores.go: `eth2-val-tools keystores ...` (this binary under that name) writes EIP-2335
//     keystores, their passwords and a Prysm wallet for a range of keys of a mnemonic.
//   - keys.go: EIP-2333/2334 BLS key derivation, BIP-32 secp256k1 derivation for premined
//     accounts, withdrawal credentials and deposit data.
//
// The contract is written down in docs/genesis-image.md.
package main

import (
	"fmt"
	"os"
	"path/filepath"
)

const usage = `usage:
  ethgenesis genesis [--config-dir /config] [--out /data/metadata]
      write a post-merge genesis for geth and Prysm from the templates in the config dir,
      expanded with the environment (values.env)
  ethgenesis keystores --source-mnemonic M --source-min A --source-max B --out-loc DIR
      [--prysm-pass P] [--insecure]
      keystores of the keys A..B-1 of M, as eth2-val-tools writes them
Called as eth2-val-tools, it takes the same subcommands.
`

func main() {
	name := filepath.Base(os.Args[0])
	args := os.Args[1:]
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch args[0] {
	case "genesis":
		err = runGenesis(args[1:])
	case "keystores":
		err = runKeystores(args[1:])
	case "-h", "--help", "help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "%s: unknown command %q\n%s", name, args[0], usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s %s: %v\n", name, args[0], err)
		os.Exit(1)
	}
}
