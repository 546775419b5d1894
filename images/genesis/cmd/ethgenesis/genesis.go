package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"math/big"
	"os"
	"path/filepath"
	"strings"

	"github.com/OffchainLabs/prysm/v6/config/params"
	ethpb "github.com/OffchainLabs/prysm/v6/proto/prysm/v1alpha1"
	"github.com/OffchainLabs/prysm/v6/runtime/interop"
	"github.com/OffchainLabs/prysm/v6/runtime/version"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/core/vm/runtime"
	"github.com/ethereum/go-ethereum/crypto"
	gparams "github.com/ethereum/go-ethereum/params"
	"sigs.k8s.io/yaml"
)

// The deposit contract's creation code, the one Prysm deploys in its own tests: its bytecode.bin
// (github.com/OffchainLabs/prysm/v6/contracts/deposit), copied next to this file by the image
// build (scripts/kube/images-genesis.sh) from Go's module cache.
//
//go:embed deposit_contract.bin
var depositContractCreation string

// Template files under the config dir (the generator's layout).
const (
	clConfigTemplate  = "cl/config.yaml"
	mnemonicsTemplate = "cl/mnemonics.yaml"
	elConfigTemplate  = "el/genesis-config.yaml"
)

// mnemonicEntry is one item of cl/mnemonics.yaml: `count` validators from key `start` of a
// mnemonic, with `balance` Gwei each (default MAX_EFFECTIVE_BALANCE) and withdrawal credentials
// of type `wd_prefix` (0x00: BLS withdrawal key m/12381/3600/i/0; 0x01/0x02: `wd_address`).
type mnemonicEntry struct {
	Mnemonic  string `json:"mnemonic"`
	Start     uint64 `json:"start"`
	Count     uint64 `json:"count"`
	Balance   uint64 `json:"balance"`
	WdPrefix  string `json:"wd_prefix"`
	WdAddress string `json:"wd_address"`
}

// elConfig is el/genesis-config.yaml: the execution genesis.
type elConfig struct {
	ChainID                uint64            `json:"chain_id"`
	DepositContractAddress string            `json:"deposit_contract_address"`
	GasLimit               uint64            `json:"gas_limit"`
	BaseFeePerGas          uint64            `json:"base_fee_per_gas"`
	PremineMnemonic        string            `json:"premine_mnemonic"`
	Premine                map[string]string `json:"premine"` // BIP-32 path -> amount
	PremineAddrs           map[string]struct {
		Balance string `json:"balance"`
	} `json:"premine_addrs"` // address -> {balance}
}

func runGenesis(args []string) error {
	fs := flag.NewFlagSet("genesis", flag.ContinueOnError)
	configDir := fs.String("config-dir", "/config", "directory with cl/config.yaml, cl/mnemonics.yaml and el/genesis-config.yaml")
	outDir := fs.String("out", "/data/metadata", "output directory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	render := func(name string) ([]byte, error) {
		b, err := os.ReadFile(filepath.Join(*configDir, name))
		if err != nil {
			return nil, err
		}
		s, err := expand(string(b), os.LookupEnv)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		return []byte(s), nil
	}

	// The consensus chain config, loaded the way Prysm loads --chain-config-file.
	clYAML, err := render(clConfigTemplate)
	if err != nil {
		return err
	}
	cfg, err := params.UnmarshalConfig(clYAML, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", clConfigTemplate, err)
	}
	if cfg.PresetBase != "mainnet" {
		return fmt.Errorf("PRESET_BASE %q: this generator and the Prysm it is built from know only the mainnet preset", cfg.PresetBase)
	}
	if err := params.SetActive(cfg); err != nil {
		return fmt.Errorf("activating the chain config: %w", err)
	}
	fork, err := genesisFork(cfg)
	if err != nil {
		return err
	}
	genesisTime := cfg.MinGenesisTime + cfg.GenesisDelay
	if cfg.MinGenesisTime == 0 {
		return fmt.Errorf("MIN_GENESIS_TIME is 0: set GENESIS_TIMESTAMP")
	}

	// Validators.
	mYAML, err := render(mnemonicsTemplate)
	if err != nil {
		return err
	}
	var entries []mnemonicEntry
	if err := yaml.UnmarshalStrict(mYAML, &entries); err != nil {
		return fmt.Errorf("%s: %w", mnemonicsTemplate, err)
	}
	var dds []*ethpb.Deposit_Data
	var roots [][]byte
	for n, e := range entries {
		seed, err := seedFromMnemonic(e.Mnemonic)
		if err != nil {
			return fmt.Errorf("%s item %d: %w", mnemonicsTemplate, n, err)
		}
		amount := e.Balance
		if amount == 0 {
			amount = cfg.MaxEffectiveBalance
		}
		for i := e.Start; i < e.Start+e.Count; i++ {
			sk, err := blsKey(seed, signingKeyPath(i))
			if err != nil {
				return err
			}
			creds, err := withdrawalCredentials(seed, i, e.WdPrefix, e.WdAddress)
			if err != nil {
				return fmt.Errorf("%s item %d: %w", mnemonicsTemplate, n, err)
			}
			dd, root, err := depositData(sk, creds, amount)
			if err != nil {
				return err
			}
			dds, roots = append(dds, dd), append(roots, root)
		}
	}
	if len(dds) == 0 {
		return fmt.Errorf("%s lists no validators", mnemonicsTemplate)
	}
	if uint64(len(dds)) < cfg.MinGenesisActiveValidatorCount {
		return fmt.Errorf("%d validators, fewer than MIN_GENESIS_ACTIVE_VALIDATOR_COUNT %d", len(dds), cfg.MinGenesisActiveValidatorCount)
	}

	// The execution genesis.
	elYAML, err := render(elConfigTemplate)
	if err != nil {
		return err
	}
	var el elConfig
	if err := yaml.UnmarshalStrict(elYAML, &el); err != nil {
		return fmt.Errorf("%s: %w", elConfigTemplate, err)
	}
	gen, err := executionGenesis(el, cfg, genesisTime)
	if err != nil {
		return fmt.Errorf("%s: %w", elConfigTemplate, err)
	}
	block := gen.ToBlock()

	// The genesis state: Prysm's premined genesis with these deposits, on top of that block.
	st, err := interop.NewPreminedGenesis(context.Background(), genesisTime, 0, 0, fork, block,
		interop.WithDepositData(dds, roots))
	if err != nil {
		return fmt.Errorf("genesis state: %w", err)
	}
	if got := len(st.Validators()); got != len(dds) {
		return fmt.Errorf("the genesis state holds %d validators, not the %d deposits (a bad deposit signature?)", got, len(dds))
	}
	ssz, err := st.MarshalSSZ()
	if err != nil {
		return err
	}
	elJSON, err := json.MarshalIndent(gen, "", "  ")
	if err != nil {
		return err
	}

	if err := os.MkdirAll(*outDir, 0o755); err != nil {
		return err
	}
	files := []struct {
		name string
		data []byte
	}{
		{"genesis.json", elJSON},
		{"config.yaml", clYAML},
		{"genesis.ssz", ssz},
		{"deposit_contract.txt", []byte(common.HexToAddress(el.DepositContractAddress).Hex())},
		{"deposit_contract_block.txt", []byte("0")},
		{"deposit_contract_block_hash.txt", []byte(block.Hash().Hex())},
		{"genesis_validators_root.txt", []byte(fmt.Sprintf("%#x", st.GenesisValidatorsRoot()))},
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(*outDir, f.name), f.data, 0o644); err != nil {
			return err
		}
	}
	fmt.Printf("genesis: %s from genesis, time %d, %d validators, genesis_validators_root %#x, execution genesis %s (chain id %d), written to %s\n",
		version.String(fork), genesisTime, len(dds), st.GenesisValidatorsRoot(), block.Hash().Hex(), el.ChainID, *outDir)
	return nil
}

// genesisFork is the latest fork active at epoch 0. The genesis is post-merge: Bellatrix (and
// so Altair) must be at epoch 0.
func genesisFork(cfg *params.BeaconChainConfig) (int, error) {
	if cfg.AltairForkEpoch != 0 || cfg.BellatrixForkEpoch != 0 {
		return 0, fmt.Errorf("ALTAIR_FORK_EPOCH and BELLATRIX_FORK_EPOCH must be 0: this generator writes post-merge genesis only")
	}
	fork := version.Bellatrix
	for _, f := range []struct {
		epoch   uint64
		version int
	}{
		{uint64(cfg.CapellaForkEpoch), version.Capella},
		{uint64(cfg.DenebForkEpoch), version.Deneb},
		{uint64(cfg.ElectraForkEpoch), version.Electra},
		{uint64(cfg.FuluForkEpoch), version.Fulu},
	} {
		if f.epoch != 0 {
			break
		}
		fork = f.version
	}
	return fork, nil
}

// forkTime is the execution fork time of a consensus fork epoch (nil: never).
func forkTime(cfg *params.BeaconChainConfig, genesisTime uint64, epoch uint64) *uint64 {
	perEpoch := uint64(cfg.SlotsPerEpoch) * cfg.SecondsPerSlot
	if epoch >= uint64(cfg.FarFutureEpoch) || perEpoch == 0 || epoch > (math.MaxUint64-genesisTime)/perEpoch {
		return nil
	}
	t := genesisTime + epoch*perEpoch
	return &t
}

func executionGenesis(el elConfig, cfg *params.BeaconChainConfig, genesisTime uint64) (*core.Genesis, error) {
	if el.ChainID == 0 {
		return nil, fmt.Errorf("chain_id is 0")
	}
	if !common.IsHexAddress(el.DepositContractAddress) {
		return nil, fmt.Errorf("bad deposit_contract_address %q", el.DepositContractAddress)
	}
	if el.ChainID != cfg.DepositChainID {
		return nil, fmt.Errorf("chain_id %d differs from the chain config's DEPOSIT_CHAIN_ID %d", el.ChainID, cfg.DepositChainID)
	}
	zero := func() *big.Int { return big.NewInt(0) }
	shanghai := forkTime(cfg, genesisTime, uint64(cfg.CapellaForkEpoch))
	cancun := forkTime(cfg, genesisTime, uint64(cfg.DenebForkEpoch))
	prague := forkTime(cfg, genesisTime, uint64(cfg.ElectraForkEpoch))
	osaka := forkTime(cfg, genesisTime, uint64(cfg.FuluForkEpoch))
	blobs := &gparams.BlobScheduleConfig{Cancun: gparams.DefaultCancunBlobConfig, Prague: gparams.DefaultPragueBlobConfig}
	if osaka != nil {
		blobs.Osaka = gparams.DefaultOsakaBlobConfig
	}
	chain := &gparams.ChainConfig{
		ChainID:                 new(big.Int).SetUint64(el.ChainID),
		HomesteadBlock:          zero(),
		EIP150Block:             zero(),
		EIP155Block:             zero(),
		EIP158Block:             zero(),
		ByzantiumBlock:          zero(),
		ConstantinopleBlock:     zero(),
		PetersburgBlock:         zero(),
		IstanbulBlock:           zero(),
		MuirGlacierBlock:        zero(),
		BerlinBlock:             zero(),
		LondonBlock:             zero(),
		ArrowGlacierBlock:       zero(),
		GrayGlacierBlock:        zero(),
		MergeNetsplitBlock:      zero(),
		TerminalTotalDifficulty: zero(),
		ShanghaiTime:            shanghai,
		CancunTime:              cancun,
		PragueTime:              prague,
		OsakaTime:               osaka,
		DepositContractAddress:  common.HexToAddress(el.DepositContractAddress),
		BlobScheduleConfig:      blobs,
	}

	alloc := types.GenesisAlloc{}
	// The system contracts of EIP-4788 (Cancun), EIP-2935, EIP-7002 and EIP-7251 (Prague), as
	// go-ethereum deploys them in its own dev genesis.
	for addr, code := range map[common.Address][]byte{
		gparams.BeaconRootsAddress:        gparams.BeaconRootsCode,
		gparams.HistoryStorageAddress:     gparams.HistoryStorageCode,
		gparams.WithdrawalQueueAddress:    gparams.WithdrawalQueueCode,
		gparams.ConsolidationQueueAddress: gparams.ConsolidationQueueCode,
	} {
		alloc[addr] = types.Account{Code: code, Nonce: 1, Balance: zero()}
	}
	dc, err := depositContract()
	if err != nil {
		return nil, fmt.Errorf("deploying the deposit contract: %w", err)
	}
	alloc[chain.DepositContractAddress] = dc

	if len(el.Premine) > 0 {
		seed, err := seedFromMnemonic(el.PremineMnemonic)
		if err != nil {
			return nil, fmt.Errorf("premine_mnemonic: %w", err)
		}
		for path, amount := range el.Premine {
			wei, err := parseAmount(amount)
			if err != nil {
				return nil, fmt.Errorf("premine %s: %w", path, err)
			}
			key, err := secpKey(seed, path)
			if err != nil {
				return nil, err
			}
			alloc[crypto.PubkeyToAddress(key.PublicKey)] = types.Account{Balance: wei}
		}
	}
	for addr, a := range el.PremineAddrs {
		if !common.IsHexAddress(addr) {
			return nil, fmt.Errorf("premine_addrs: bad address %q", addr)
		}
		wei, err := parseAmount(a.Balance)
		if err != nil {
			return nil, fmt.Errorf("premine_addrs %s: %w", addr, err)
		}
		alloc[common.HexToAddress(addr)] = types.Account{Balance: wei}
	}

	gasLimit := el.GasLimit
	if gasLimit == 0 {
		gasLimit = 60_000_000
	}
	baseFee := el.BaseFeePerGas
	if baseFee == 0 {
		baseFee = gparams.InitialBaseFee
	}
	g := &core.Genesis{
		Config:     chain,
		Timestamp:  genesisTime,
		ExtraData:  []byte{},
		GasLimit:   gasLimit,
		Difficulty: zero(),
		Alloc:      alloc,
		BaseFee:    new(big.Int).SetUint64(baseFee),
	}
	if cancun != nil && *cancun == genesisTime {
		var z uint64
		g.ExcessBlobGas, g.BlobGasUsed = &z, &z
	}
	return g, nil
}

// depositContract runs the deposit contract's creation code in go-ethereum's EVM and returns the
// deployed account: its runtime code and the storage its constructor wrote (the zero hashes of
// the deposit tree, slots 0x22..0x40 of its 65 storage slots).
func depositContract() (types.Account, error) {
	creation := common.FromHex(strings.TrimSpace(depositContractCreation))
	if len(creation) == 0 {
		return types.Account{}, fmt.Errorf("no creation code embedded")
	}
	rc := &runtime.Config{}
	code, addr, _, err := runtime.Create(creation, rc)
	if err != nil {
		return types.Account{}, err
	}
	storage := map[common.Hash]common.Hash{}
	for i := int64(0); i < 65; i++ {
		k := common.BigToHash(big.NewInt(i))
		if v := rc.State.GetState(addr, k); v != (common.Hash{}) {
			storage[k] = v
		}
	}
	return types.Account{Code: code, Storage: storage, Balance: big.NewInt(0)}, nil
}

// parseAmount reads "1000000000ETH", "5gwei" or a plain number of wei.
func parseAmount(s string) (*big.Int, error) {
	s = strings.TrimSpace(s)
	unit := big.NewInt(1)
	lower := strings.ToLower(s)
	switch {
	case strings.HasSuffix(lower, "eth"):
		unit, s = big.NewInt(1e18), s[:len(s)-3]
	case strings.HasSuffix(lower, "gwei"):
		unit, s = big.NewInt(1e9), s[:len(s)-4]
	case strings.HasSuffix(lower, "wei"):
		s = s[:len(s)-3]
	}
	v, ok := new(big.Int).SetString(strings.TrimSpace(s), 0)
	if !ok || v.Sign() < 0 {
		return nil, fmt.Errorf("bad amount %q", s)
	}
	return v.Mul(v, unit), nil
}
