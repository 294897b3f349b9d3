// SPDX-License-Identifier: UNLICENSED
// tests/chain/Multicall3Test.sol: the one Multicall3 call the reference consumer uses,
// `aggregate((address,bytes)[])` (docs/morpheus-protocol.md §1.2 (a) step 3, §3.2 "batching").
// scripts/devnet installs its runtime code at the canonical Multicall3 address
// 0xcA11bde05977b3631167028862bE2a173976CA11 (§3.1) with anvil_setCode.
pragma solidity ^0.8.20;

contract Multicall3Test {
    struct Call {
        address target;
        bytes callData;
    }

    /// Like Multicall3: any failing call reverts the whole batch with "Multicall3: call failed".
    function aggregate(Call[] calldata calls) external payable returns (uint256 blockNumber, bytes[] memory returnData) {
        blockNumber = block.number;
        returnData = new bytes[](calls.length);
        for (uint256 i = 0; i < calls.length; i++) {
            (bool ok, bytes memory ret) = calls[i].target.call(calls[i].callData);
            require(ok, "Multicall3: call failed");
            returnData[i] = ret;
        }
    }
}
