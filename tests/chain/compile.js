#!/usr/bin/env node
// tests/chain/compile.js: compile the test-chain contracts with the pinned solc-js and write
// tests/chain/build/<Contract>.json = {contractName, abi, bytecode, deployedBytecode,
// methodIdentifiers, compiler}, and tests/chain/build/selectors.json = every function selector,
// return types, event topic0 and error selector of those ABIs, keyed by canonical signature (read by
// tests/support/chain.sh to name reverts). The build/ files are checked in, so tests and `make run` need
// no compile step; rerun this after editing a .sol file (cd to the repo root, `npm ci` first):
//   node tests/chain/compile.js
'use strict';
const fs = require('fs');
const path = require('path');
const solc = require(path.join(__dirname, '../../node_modules/solc'));
const { keccak256 } = require(path.join(__dirname, '../../node_modules/js-sha3')); // solc's own dependency

// Canonical type of an ABI parameter (tuples expanded), as in selectors and topics.
const canon = p => p.type.startsWith('tuple') ? '(' + p.components.map(canon).join(',') + ')' + p.type.slice(5) : p.type;
const sigOf = e => `${e.name}(${e.inputs.map(canon).join(',')})`;

const dir = __dirname;
const sources = {};
for (const f of fs.readdirSync(dir).filter(f => f.endsWith('.sol')).sort()) {
  sources[f] = { content: fs.readFileSync(path.join(dir, f), 'utf8') };
}
const input = {
  language: 'Solidity',
  sources,
  settings: {
    optimizer: { enabled: true, runs: 200 },
    viaIR: true, // the Diamond's openSession/closeSession need it (stack depth)
    evmVersion: 'cancun',
    outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object', 'evm.methodIdentifiers'] } },
  },
};
const out = JSON.parse(solc.compile(JSON.stringify(input)));
let failed = false;
for (const e of out.errors || []) {
  process.stderr.write(e.formattedMessage);
  if (e.severity === 'error') failed = true;
}
if (failed) process.exit(1);
fs.mkdirSync(path.join(dir, 'build'), { recursive: true });
const selectors = {};
for (const file of Object.keys(out.contracts)) {
  for (const [name, c] of Object.entries(out.contracts[file])) {
    if (!c.evm.bytecode.object) continue; // interfaces
    const sel = (selectors[name] = { functions: {}, returns: {}, events: {}, errors: {} });
    for (const e of c.abi) {
      if (e.type === 'function') sel.functions[sigOf(e)] = '0x' + keccak256(sigOf(e)).slice(0, 8);
      if (e.type === 'function') sel.returns[sigOf(e)] = '(' + e.outputs.map(canon).join(',') + ')';
      if (e.type === 'event') sel.events[sigOf(e)] = '0x' + keccak256(sigOf(e));
      if (e.type === 'error') sel.errors[sigOf(e)] = '0x' + keccak256(sigOf(e)).slice(0, 8);
    }
    const art = {
      contractName: name,
      source: 'tests/chain/' + file,
      compiler: 'solc-js ' + solc.version(),
      abi: c.abi,
      bytecode: '0x' + c.evm.bytecode.object,
      deployedBytecode: '0x' + c.evm.deployedBytecode.object,
      methodIdentifiers: c.evm.methodIdentifiers,
    };
    fs.writeFileSync(path.join(dir, 'build', name + '.json'), JSON.stringify(art, null, 1) + '\n');
    console.log(`${name}: ${(c.evm.deployedBytecode.object.length / 2) | 0} bytes runtime`);
  }
}
fs.writeFileSync(path.join(dir, 'build', 'selectors.json'), JSON.stringify(selectors, null, 1) + '\n');
