// SPDX-License-Identifier: UNLICENSED
// tests/chain/MorpheusDiamondTest.sol: one plain contract with the external ABI of the Morpheus
// Diamond, for morgate's tests.
//
// It is not the real Diamond and not a copy of its source: it reproduces the calls, selectors,
// struct layouts, events, custom errors and the observable rules of docs/morpheus-protocol.md
// §3 (section numbers below refer to that file). Where the spec says nothing, the fixture takes
// the simplest reading and says so. Functions marked "test-only" do not exist on the real
// Diamond (or exist under another name); clients must not depend on them.
//
// Deliberate simplifications (fixture, not protocol):
//   * totalMORSupply/getComputeBalance do not follow the reward-pool curves (§3.6.1): they are
//     `supplyBase + providersTotalClaimed` and `computeBase - providersTotalClaimed`, both
//     constant over time, set by the owner (setComputeParams). The stake formula of §3.6.1 is
//     therefore computable from the live view calls, which is what clients rely on.
//   * Delegation (§3.6 step 1, §3.7) is a local table (setDelegation) instead of the delegate.xyz
//     registry; isRightsDelegated reads it.
//   * The four approval/receipt errors have two spellings (§3.5): the fixture throws the current
//     source spelling (`Session…`) unless the owner calls setLegacyErrorSpelling(true), which
//     switches to the Go bindings' spelling (`Sesssion…`), so clients can test both decodings.
pragma solidity ^0.8.20;

interface IMorToken {
    function transfer(address to, uint256 amount) external returns (bool);
    function transferFrom(address from, address to, uint256 amount) external returns (bool);
}

contract MorpheusDiamondTest {
    // ---------------------------------------------------------------- structs (§3.3)
    struct Bid {
        address provider;
        bytes32 modelId;
        uint256 pricePerSecond;
        uint256 nonce;
        uint128 createdAt;
        uint128 deletedAt;
    }

    struct Provider {
        string endpoint;
        uint256 stake;
        uint128 createdAt;
        uint128 limitPeriodEnd;
        uint256 limitPeriodEarned;
        bool isDeleted;
    }

    struct Model {
        bytes32 ipfsCID;
        uint256 fee;
        uint256 stake;
        address owner;
        string name;
        string[] tags;
        uint128 createdAt;
        bool isDeleted;
    }

    struct Session {
        address user;
        bytes32 bidId;
        uint256 stake;
        bytes closeoutReceipt;
        uint256 closeoutType;
        uint256 providerWithdrawnAmount;
        uint128 openedAt;
        uint128 endsAt;
        uint128 closedAt;
        bool isActive;
        bool isDirectPaymentFromUser;
    }

    struct SD {
        int64 mean;
        int64 sqSum;
    }

    struct ProviderModelStats {
        SD tpsScaled1000;
        SD ttftMs;
        uint32 totalDuration;
        uint32 successCount;
        uint32 totalCount;
    }

    struct ModelStats {
        SD tpsScaled1000;
        SD ttftMs;
        SD totalDuration;
        uint32 count;
    }

    struct OnHold {
        uint256 amount;
        uint128 releaseAt;
    }

    // ---------------------------------------------------------------- events (§3.4)
    event SessionOpened(address indexed user, bytes32 indexed sessionId, address indexed providerId);
    event SessionClosed(address indexed user, bytes32 indexed sessionId, address indexed providerId);
    event UserWithdrawn(address indexed user, uint256 amount_);
    event MarketplaceBidPosted(address indexed provider, bytes32 indexed modelId, uint256 nonce);
    event MarketplaceBidDeleted(address indexed provider, bytes32 indexed modelId, uint256 nonce);
    event ProviderRegistered(address indexed provider);
    event ProviderDeregistered(address indexed provider);
    event ModelRegisteredUpdated(address indexed owner, bytes32 indexed modelId);

    // ---------------------------------------------------------------- errors (§3.5)
    error SesssionApproveExpired();
    error SesssionApprovedForAnotherChainId();
    error SesssionReceiptExpired();
    error SesssionReceiptForAnotherChainId();
    error SessionApproveExpired();
    error SessionApprovedForAnotherChainId();
    error SessionReceiptExpired();
    error SessionReceiptForAnotherChainId();
    error SessionProviderSignatureMismatch();
    error SessionDuplicateApproval();
    error SessionTooShort();
    error SessionAlreadyClosed();
    error SessionBidNotFound();
    error SessionStakeTooLow();
    error SessionUserAmountToWithdrawIsZero();
    error SessionMaxDurationTooShort();
    error SessionApprovedForAnotherUser(); // declared, never thrown (§3.5)
    error InsufficientRightsForOperation(address, address);
    error OwnableUnauthorizedAccount(address);
    error MarketplaceProviderNotFound();
    error MarketplaceModelNotFound();
    error MarketplaceActiveBidNotFound();
    error MarketplaceBidPricePerSecondInvalid();
    error ProviderStakeTooLow(uint256, uint256);
    error ProviderHasActiveBids();
    error ProviderNotFound();
    error ModelStakeTooLow(uint256, uint256);
    error ModelHasActiveBids();

    // ---------------------------------------------------------------- constants
    uint128 public constant MIN_SESSION_DURATION = 300; // §3.6 step 5
    uint128 public constant SIGNATURE_TTL = 600; // §3.6 step 2, §3.7
    uint128 public constant PROVIDER_REWARD_LIMITER_PERIOD = 365 days; // §3.7
    bytes32 public constant DELEGATION_RULES_SESSION = keccak256("delegation.rules.session"); // §3.6 step 1
    bytes32 public constant DELEGATION_RULES_PROVIDER = keccak256("delegation.rules.provider"); // §3.6 step 5
    bytes32 public constant DELEGATION_RULES_MODEL = keccak256("delegation.rules.model");
    bytes32 public constant DELEGATION_RULES_MARKETPLACE = keccak256("delegation.rules.marketplace");

    // ---------------------------------------------------------------- state
    address public owner;
    IMorToken private token;
    address public fundingAccount;
    bool public legacyErrorSpelling;

    uint256 private providerMinimumStake;
    uint256 private modelMinimumStake;
    uint256 private bidFee;
    uint256 private minBidPricePerSecond;
    uint256 private maxBidPricePerSecond;
    uint128 private maxSessionDuration;
    uint256 private computeBase;
    uint256 private supplyBase;
    uint256 public providersTotalClaimed;
    uint256 public sessionNonce; // global (§3.2)

    mapping(bytes32 => Bid) private bids;
    mapping(address => Provider) private providers;
    mapping(bytes32 => Model) private models;
    mapping(bytes32 => Session) private sessions;
    mapping(bytes32 => uint256) private providerModelNonce; // by providerModelId
    mapping(bytes32 => ProviderModelStats) private pmStats; // by providerModelId
    mapping(bytes32 => ModelStats) private modelStats;
    mapping(bytes => bool) private approvalUsed;
    mapping(address => OnHold[]) private stakesOnHold;
    mapping(bytes32 => bool) private delegations; // keccak(delegatee, delegator, rights)

    bytes32[] private modelIds;
    List32 private activeModels;
    ListAddr private activeProviders;
    mapping(address => bytes32[]) private providerBids;
    mapping(bytes32 => bytes32[]) private modelBids;
    mapping(address => List32) private providerActiveBids;
    mapping(bytes32 => List32) private modelActiveBids;
    mapping(address => bytes32[]) private userSessions;
    mapping(address => bytes32[]) private providerSessions;

    // Insertion-ordered sets (EnumerableSet semantics: removal moves the last element).
    struct List32 {
        bytes32[] items;
        mapping(bytes32 => uint256) pos; // index + 1
    }

    struct ListAddr {
        address[] items;
        mapping(address => uint256) pos;
    }

    /// `token_` is the MOR token; `fundingAccount_` pays providers of staked sessions (§3.7) and
    /// must have given this contract an allowance. Parameters start at the BASE/Arbitrum mainnet
    /// deploy values of §3.1; the compute figures give getTodaysBudget = 30 000 MOR and
    /// totalMORSupply = 10 000 000 MOR (so stake = cost × 1000/3, truncated; §3.6.1).
    constructor(address token_, address fundingAccount_) {
        owner = msg.sender;
        token = IMorToken(token_);
        fundingAccount = fundingAccount_;
        providerMinimumStake = 1e17;
        modelMinimumStake = 1e17;
        bidFee = 1e17;
        minBidPricePerSecond = 1e13;
        maxBidPricePerSecond = 1e16;
        maxSessionDuration = 1 days;
        computeBase = 3_000_000e18;
        supplyBase = 10_000_000e18;
    }

    // ================================================================ admin (owner only)
    modifier onlyOwner() {
        if (msg.sender != owner) revert OwnableUnauthorizedAccount(msg.sender);
        _;
    }

    function setProviderMinimumStake(uint256 v) external onlyOwner {
        providerMinimumStake = v;
    }

    function setModelMinimumStake(uint256 v) external onlyOwner {
        modelMinimumStake = v;
    }

    function setMarketplaceBidFee(uint256 v) external onlyOwner {
        bidFee = v;
    }

    function setMinMaxBidPricePerSecond(uint256 min_, uint256 max_) external onlyOwner {
        if (min_ == 0 || min_ > max_) revert MarketplaceBidPricePerSecondInvalid();
        minBidPricePerSecond = min_;
        maxBidPricePerSecond = max_;
    }

    function setMaxSessionDuration(uint128 v) external onlyOwner {
        if (v < MIN_SESSION_DURATION) revert SessionMaxDurationTooShort();
        maxSessionDuration = v;
    }

    /// Test-only: the two constants behind totalMORSupply / getComputeBalance.
    function setComputeParams(uint256 computeBase_, uint256 supplyBase_) external onlyOwner {
        computeBase = computeBase_;
        supplyBase = supplyBase_;
    }

    /// Test-only: throw the Go bindings' `Sesssion…` spellings (§3.5) instead of `Session…`.
    function setLegacyErrorSpelling(bool v) external onlyOwner {
        legacyErrorSpelling = v;
    }

    /// Test-only: the caller (delegator) grants or revokes `rights` to `delegatee`
    /// (stands in for the delegate.xyz registry of §3.1).
    function setDelegation(address delegatee, bytes32 rights, bool enable) external {
        delegations[keccak256(abi.encode(delegatee, msg.sender, rights))] = enable;
    }

    // ================================================================ parameters and time (§3.1, §3.2)
    function getToken() external view returns (address) {
        return address(token);
    }

    function getProviderMinimumStake() external view returns (uint256) {
        return providerMinimumStake;
    }

    function getModelMinimumStake() external view returns (uint256) {
        return modelMinimumStake;
    }

    function getBidFee() external view returns (uint256) {
        return bidFee;
    }

    function getMinMaxBidPricePerSecond() external view returns (uint256, uint256) {
        return (minBidPricePerSecond, maxBidPricePerSecond);
    }

    function getMaxSessionDuration() external view returns (uint128) {
        return maxSessionDuration;
    }

    function startOfTheDay(uint128 timestamp_) public pure returns (uint128) {
        return timestamp_ - (timestamp_ % 1 days);
    }

    function isRightsDelegated(address delegatee_, address delegator_, bytes32 rights_) public view returns (bool) {
        return delegations[keccak256(abi.encode(delegatee_, delegator_, rights_))];
    }

    // ================================================================ stake <-> stipend (§3.6.1)
    function getComputeBalance(uint128) public view returns (uint256) {
        return computeBase > providersTotalClaimed ? computeBase - providersTotalClaimed : 0;
    }

    function totalMORSupply(uint128) public view returns (uint256) {
        return supplyBase + providersTotalClaimed;
    }

    function getTodaysBudget(uint128 timestamp_) external view returns (uint256) {
        return getComputeBalance(timestamp_) / 100;
    }

    function stakeToStipend(uint256 amount_, uint128 timestamp_) public view returns (uint256) {
        uint256 supply = totalMORSupply(timestamp_);
        if (supply == 0) return 0;
        return (amount_ * getComputeBalance(timestamp_)) / (supply * 100);
    }

    function stipendToStake(uint256 stipend_, uint128 timestamp_) public view returns (uint256) {
        uint256 balance = getComputeBalance(timestamp_);
        if (balance == 0) return 0;
        return (stipend_ * totalMORSupply(timestamp_) * 100) / balance;
    }

    function getSessionEnd(uint256 amount_, uint256 pricePerSecond_, uint128 openedAt_) public view returns (uint128) {
        uint256 duration = pricePerSecond_ == 0 ? maxSessionDuration : stakeToStipend(amount_, openedAt_) / pricePerSecond_;
        if (duration > maxSessionDuration) duration = maxSessionDuration;
        return openedAt_ + uint128(duration);
    }

    // ================================================================ providers (§3.2, §4.6)
    function providerRegister(address provider_, uint256 amount_, string calldata endpoint_) external {
        _validateDelegatee(msg.sender, provider_, DELEGATION_RULES_PROVIDER);
        if (amount_ > 0) _pull(provider_, amount_);
        Provider storage p = providers[provider_];
        uint256 newStake = p.stake + amount_;
        if (newStake < providerMinimumStake) revert ProviderStakeTooLow(newStake, providerMinimumStake);
        if (p.createdAt == 0) {
            p.createdAt = _now();
            p.limitPeriodEnd = _now() + PROVIDER_REWARD_LIMITER_PERIOD;
        }
        p.isDeleted = false;
        p.endpoint = endpoint_;
        p.stake = newStake;
        _addAddr(activeProviders, provider_);
        emit ProviderRegistered(provider_);
    }

    /// Needs no active bids; gives the stake back.
    function providerDeregister(address provider_) external {
        _validateDelegatee(msg.sender, provider_, DELEGATION_RULES_PROVIDER);
        Provider storage p = providers[provider_];
        if (!getIsProviderActive(provider_)) revert ProviderNotFound();
        if (providerActiveBids[provider_].items.length != 0) revert ProviderHasActiveBids();
        uint256 stake = p.stake;
        p.stake = 0;
        p.isDeleted = true;
        _removeAddr(activeProviders, provider_);
        if (stake > 0) _push(provider_, stake);
        emit ProviderDeregistered(provider_);
    }

    function getProvider(address provider_) external view returns (Provider memory) {
        return providers[provider_];
    }

    function getIsProviderActive(address provider_) public view returns (bool) {
        return providers[provider_].createdAt != 0 && !providers[provider_].isDeleted;
    }

    function getActiveProviders(uint256 offset_, uint256 limit_) external view returns (address[] memory, uint256) {
        return _partAddr(activeProviders.items, offset_, limit_);
    }

    // ================================================================ models (§3.2, §3.3)
    function getModelId(address owner_, bytes32 baseModelId_) public pure returns (bytes32) {
        return keccak256(abi.encodePacked(owner_, baseModelId_));
    }

    function modelRegister(
        address owner_,
        bytes32 baseModelId_,
        bytes32 ipfsCID_,
        uint256 fee_,
        uint256 amount_,
        string calldata name_,
        string[] calldata tags_
    ) external {
        _validateDelegatee(msg.sender, owner_, DELEGATION_RULES_MODEL);
        bytes32 modelId = getModelId(owner_, baseModelId_);
        if (amount_ > 0) _pull(owner_, amount_);
        Model storage m = models[modelId];
        uint256 newStake = m.stake + amount_;
        if (newStake < modelMinimumStake) revert ModelStakeTooLow(newStake, modelMinimumStake);
        if (m.createdAt == 0) {
            m.createdAt = _now();
            modelIds.push(modelId);
        }
        m.ipfsCID = ipfsCID_;
        m.fee = fee_;
        m.stake = newStake;
        m.owner = owner_;
        m.name = name_;
        m.tags = tags_;
        m.isDeleted = false;
        _add32(activeModels, modelId);
        emit ModelRegisteredUpdated(owner_, modelId);
    }

    /// Needs no active bids; gives the stake back. (An unknown model reverts with
    /// MarketplaceModelNotFound: §3.5 lists no registry-specific error for it.)
    function modelDeregister(bytes32 modelId_) external {
        Model storage m = models[modelId_];
        _validateDelegatee(msg.sender, m.owner, DELEGATION_RULES_MODEL);
        if (!getIsModelActive(modelId_)) revert MarketplaceModelNotFound();
        if (modelActiveBids[modelId_].items.length != 0) revert ModelHasActiveBids();
        uint256 stake = m.stake;
        m.stake = 0;
        m.isDeleted = true;
        _remove32(activeModels, modelId_);
        if (stake > 0) _push(m.owner, stake);
        emit ModelRegisteredUpdated(m.owner, modelId_);
    }

    function getModel(bytes32 modelId_) external view returns (Model memory) {
        return models[modelId_];
    }

    function getIsModelActive(bytes32 modelId_) public view returns (bool) {
        return models[modelId_].createdAt != 0 && !models[modelId_].isDeleted;
    }

    function getModelIds(uint256 offset_, uint256 limit_) external view returns (bytes32[] memory, uint256) {
        return _part32(modelIds, offset_, limit_);
    }

    function getActiveModelIds(uint256 offset_, uint256 limit_) external view returns (bytes32[] memory, uint256) {
        return _part32(activeModels.items, offset_, limit_);
    }

    // ================================================================ bids (§3.2, §3.3)
    function getProviderModelId(address provider_, bytes32 modelId_) public pure returns (bytes32) {
        return keccak256(abi.encodePacked(provider_, modelId_));
    }

    function getBidId(address provider_, bytes32 modelId_, uint256 nonce_) public pure returns (bytes32) {
        return keccak256(abi.encodePacked(provider_, modelId_, nonce_));
    }

    /// Pulls the bid fee from the provider (§4.6); a new bid for the same provider and model
    /// deletes the previous active one; the nonce counts per provider-model pair from 0 (§3.2).
    function postModelBid(address provider_, bytes32 modelId_, uint256 pricePerSecond_) external returns (bytes32 bidId) {
        _validateDelegatee(msg.sender, provider_, DELEGATION_RULES_MARKETPLACE);
        if (pricePerSecond_ < minBidPricePerSecond || pricePerSecond_ > maxBidPricePerSecond) {
            revert MarketplaceBidPricePerSecondInvalid();
        }
        if (!getIsProviderActive(provider_)) revert MarketplaceProviderNotFound();
        if (!getIsModelActive(modelId_)) revert MarketplaceModelNotFound();
        if (bidFee > 0) _pull(provider_, bidFee);

        bytes32 pmId = getProviderModelId(provider_, modelId_);
        uint256 nonce = providerModelNonce[pmId]++;
        if (nonce > 0) {
            bytes32 previous = getBidId(provider_, modelId_, nonce - 1);
            if (isBidActive(previous)) _deleteBid(previous);
        }
        bidId = getBidId(provider_, modelId_, nonce);
        bids[bidId] = Bid(provider_, modelId_, pricePerSecond_, nonce, _now(), 0);
        providerBids[provider_].push(bidId);
        modelBids[modelId_].push(bidId);
        _add32(providerActiveBids[provider_], bidId);
        _add32(modelActiveBids[modelId_], bidId);
        emit MarketplaceBidPosted(provider_, modelId_, nonce);
    }

    function deleteModelBid(bytes32 bidId_) external {
        _validateDelegatee(msg.sender, bids[bidId_].provider, DELEGATION_RULES_MARKETPLACE);
        if (!isBidActive(bidId_)) revert MarketplaceActiveBidNotFound();
        _deleteBid(bidId_);
    }

    function _deleteBid(bytes32 bidId_) private {
        Bid storage b = bids[bidId_];
        b.deletedAt = _now();
        _remove32(providerActiveBids[b.provider], bidId_);
        _remove32(modelActiveBids[b.modelId], bidId_);
        emit MarketplaceBidDeleted(b.provider, b.modelId, b.nonce);
    }

    /// Unknown id: all zeros, no revert (§3.3).
    function getBid(bytes32 bidId_) external view returns (Bid memory) {
        return bids[bidId_];
    }

    function isBidActive(bytes32 bidId_) public view returns (bool) {
        return bids[bidId_].createdAt != 0 && bids[bidId_].deletedAt == 0;
    }

    function getModelActiveBids(bytes32 modelId_, uint256 offset_, uint256 limit_) external view returns (bytes32[] memory, uint256) {
        return _part32(modelActiveBids[modelId_].items, offset_, limit_);
    }

    function getProviderActiveBids(address provider_, uint256 offset_, uint256 limit_) external view returns (bytes32[] memory, uint256) {
        return _part32(providerActiveBids[provider_].items, offset_, limit_);
    }

    function getModelBids(bytes32 modelId_, uint256 offset_, uint256 limit_) external view returns (bytes32[] memory, uint256) {
        return _part32(modelBids[modelId_], offset_, limit_);
    }

    function getProviderBids(address provider_, uint256 offset_, uint256 limit_) external view returns (bytes32[] memory, uint256) {
        return _part32(providerBids[provider_], offset_, limit_);
    }

    // ================================================================ stats (§3.3, §3.7)
    function getProviderModelStats(bytes32 modelId_, address provider_) external view returns (ProviderModelStats memory) {
        return pmStats[getProviderModelId(provider_, modelId_)];
    }

    function getModelStats(bytes32 modelId_) external view returns (ModelStats memory) {
        return modelStats[modelId_];
    }

    // ================================================================ sessions (§3.6, §3.7)
    function getSessionId(address user_, address provider_, bytes32 bidId_, uint256 sessionNonce_) public pure returns (bytes32) {
        return keccak256(abi.encodePacked(user_, provider_, bidId_, sessionNonce_));
    }

    function openSession(
        address user_,
        uint256 amount_,
        bool isDirectPaymentFromUser_,
        bytes calldata approvalEncoded_,
        bytes calldata signature_
    ) external returns (bytes32 sessionId) {
        // §3.6 step 1: the caller is the user or holds delegation.rules.session from the user.
        _validateDelegatee(msg.sender, user_, DELEGATION_RULES_SESSION);
        // step 2: chain id and TTL of the approval; its user word is not checked (§7 trap 14).
        bytes32 bidId = _extractProviderApproval(approvalEncoded_);
        Bid storage bid = bids[bidId];
        // step 3: global nonce.
        sessionId = getSessionId(user_, bid.provider, bidId, sessionNonce++);
        // step 4: needs an ERC-20 allowance from the user; a failure bubbles up the token's revert.
        _pull(user_, amount_);
        // step 5.
        uint128 endsAt = _validateSession(bid, bidId, amount_, isDirectPaymentFromUser_, approvalEncoded_, signature_);
        // step 6.
        Session storage s = sessions[sessionId];
        s.user = user_;
        s.bidId = bidId;
        s.stake = amount_;
        s.openedAt = _now();
        s.endsAt = endsAt;
        s.isActive = true;
        s.isDirectPaymentFromUser = isDirectPaymentFromUser_;
        userSessions[user_].push(sessionId);
        providerSessions[bid.provider].push(sessionId);
        approvalUsed[approvalEncoded_] = true;
        emit SessionOpened(user_, sessionId, bid.provider);
    }

    function _extractProviderApproval(bytes calldata approval_) private view returns (bytes32) {
        (bytes32 bidId, uint256 chainId, , uint128 timestamp) = abi.decode(approval_, (bytes32, uint256, address, uint128));
        if (chainId != block.chainid) {
            if (legacyErrorSpelling) revert SesssionApprovedForAnotherChainId();
            revert SessionApprovedForAnotherChainId();
        }
        if (block.timestamp > uint256(timestamp) + SIGNATURE_TTL) {
            if (legacyErrorSpelling) revert SesssionApproveExpired();
            revert SessionApproveExpired();
        }
        return bidId;
    }

    function _validateSession(
        Bid storage bid,
        bytes32 bidId_,
        uint256 amount_,
        bool direct_,
        bytes calldata approval_,
        bytes calldata signature_
    ) private view returns (uint128 endsAt) {
        if (!isBidActive(bidId_)) revert SessionBidNotFound();
        if (!_isValidProviderReceipt(bid.provider, approval_, signature_)) revert SessionProviderSignatureMismatch();
        if (approvalUsed[approval_]) revert SessionDuplicateApproval();
        endsAt = getSessionEnd(amount_, bid.pricePerSecond, _now());
        uint256 duration = endsAt - _now();
        if (duration < MIN_SESSION_DURATION) revert SessionTooShort();
        if (direct_ && duration * bid.pricePerSecond > amount_) revert SessionStakeTooLow();
    }

    /// §3.7. Only the session user (or a delegate) may close; a receipt not signed by the bid's
    /// provider (e.g. signed by the user) closes the session as disputed (closeoutType 1).
    function closeSession(bytes calldata receiptEncoded_, bytes calldata signature_) external {
        (bytes32 sessionId, uint32 tps, uint32 ttft) = _extractProviderReceipt(receiptEncoded_);
        Session storage s = sessions[sessionId];
        _validateDelegatee(msg.sender, s.user, DELEGATION_RULES_SESSION);
        if (s.closedAt != 0) revert SessionAlreadyClosed();
        Bid storage bid = bids[s.bidId];
        bool noDispute = _isValidProviderReceipt(bid.provider, receiptEncoded_, signature_);

        s.closedAt = _now();
        s.isActive = false;
        s.closeoutReceipt = receiptEncoded_;
        s.closeoutType = noDispute ? 0 : 1;

        uint128 end = s.closedAt < s.endsAt ? s.closedAt : s.endsAt;
        uint256 providerReward = uint256(end - s.openedAt) * bid.pricePerSecond;
        _rewardUserAfterClose(s, bid, providerReward);
        _rewardProviderAfterClose(noDispute, s, bid, providerReward);

        bytes32 pmId = getProviderModelId(bid.provider, bid.modelId);
        pmStats[pmId].totalCount++;
        if (noDispute) _setStats(pmStats[pmId], modelStats[bid.modelId], tps, ttft, s.closedAt - s.openedAt);
        emit SessionClosed(s.user, sessionId, bid.provider);
    }

    /// Receipt: (bytes32 sessionId, uint256 chainId, uint128 timestamp, uint32 tps, uint32 ttft),
    /// extra trailing words allowed (the node sends 7).
    function _extractProviderReceipt(bytes calldata receipt_) private view returns (bytes32, uint32, uint32) {
        (bytes32 sessionId, uint256 chainId, uint128 timestamp, uint32 tps, uint32 ttft) =
            abi.decode(receipt_, (bytes32, uint256, uint128, uint32, uint32));
        if (chainId != block.chainid) {
            if (legacyErrorSpelling) revert SesssionReceiptForAnotherChainId();
            revert SessionReceiptForAnotherChainId();
        }
        if (block.timestamp > uint256(timestamp) + SIGNATURE_TTL) {
            if (legacyErrorSpelling) revert SesssionReceiptExpired();
            revert SessionReceiptExpired();
        }
        return (sessionId, tps, ttft);
    }

    /// §3.7 user refund: the part of today's usage is held until the next day when the session
    /// is closed before endsAt; the rest goes back now.
    function _rewardUserAfterClose(Session storage s, Bid storage bid, uint256 providerReward) private {
        uint256 userStake = s.stake - (s.isDirectPaymentFromUser ? providerReward : 0);
        uint128 day = startOfTheDay(s.closedAt);
        uint256 onHold = 0;
        if (s.closedAt < s.endsAt) {
            uint128 from = s.openedAt > day ? s.openedAt : day;
            onHold = stipendToStake(uint256(s.closedAt - from) * bid.pricePerSecond, day);
            if (onHold > userStake) onHold = userStake;
            if (onHold > 0) stakesOnHold[s.user].push(OnHold(onHold, day + 1 days));
        }
        if (userStake > onHold) _push(s.user, userStake - onHold);
    }

    /// §3.7 provider pay: used time × price, minus today's part when disputed and early; capped
    /// by the provider's stake per 365-day period; from the funding account for staked sessions.
    function _rewardProviderAfterClose(bool noDispute, Session storage s, Bid storage bid, uint256 reward) private {
        reward -= s.providerWithdrawnAmount;
        if (!noDispute) {
            uint256 withheld = _providerOnHold(s, bid);
            reward = reward > withheld ? reward - withheld : 0;
        }
        _payProvider(s, bid.provider, reward);
    }

    function _payProvider(Session storage s, address provider_, uint256 amount_) private {
        Provider storage p = providers[provider_];
        if (block.timestamp > p.limitPeriodEnd) {
            p.limitPeriodEnd = _now() + PROVIDER_REWARD_LIMITER_PERIOD;
            p.limitPeriodEarned = 0;
        }
        uint256 room = p.stake > p.limitPeriodEarned ? p.stake - p.limitPeriodEarned : 0;
        if (amount_ > room) amount_ = room;
        if (amount_ == 0) return;
        p.limitPeriodEarned += amount_;
        s.providerWithdrawnAmount += amount_;
        if (s.isDirectPaymentFromUser) {
            _push(provider_, amount_);
        } else {
            providersTotalClaimed += amount_;
            _tokenCall(abi.encodeCall(IMorToken.transferFrom, (fundingAccount, provider_, amount_)));
        }
    }

    /// §3.7: the provider (or a delegate) collects what is still owed once the session has
    /// ended, except the part withheld by a disputed early close, which is released on the day
    /// after the close. Nothing to pay (session not ended yet, or all paid) is a no-op.
    function claimForProvider(bytes32 sessionId_) external {
        Session storage s = sessions[sessionId_];
        Bid storage bid = bids[s.bidId];
        _validateDelegatee(msg.sender, bid.provider, DELEGATION_RULES_SESSION);
        uint128 end = s.closedAt == 0 || s.closedAt > s.endsAt ? s.endsAt : s.closedAt;
        if (s.openedAt == 0 || block.timestamp < end) return;
        uint256 owed = uint256(end - s.openedAt) * bid.pricePerSecond - s.providerWithdrawnAmount;
        uint256 onHold = _providerOnHold(s, bid);
        if (owed > onHold) _payProvider(s, bid.provider, owed - onHold);
    }

    function _providerOnHold(Session storage s, Bid storage bid) private view returns (uint256) {
        if (s.closeoutType != 1 || s.closedAt >= s.endsAt) return 0;
        uint128 day = startOfTheDay(s.closedAt);
        if (block.timestamp >= day + 1 days) return 0;
        return uint256(s.closedAt - (s.openedAt > day ? s.openedAt : day)) * bid.pricePerSecond;
    }

    /// Unknown id: all zeros, no revert (§3.3, §7 trap 12).
    function getSession(bytes32 sessionId_) external view returns (Session memory) {
        return sessions[sessionId_];
    }

    function getUserSessions(address user_, uint256 offset_, uint256 limit_) external view returns (bytes32[] memory, uint256) {
        return _part32(userSessions[user_], offset_, limit_);
    }

    function getProviderSessions(address provider_, uint256 offset_, uint256 limit_) external view returns (bytes32[] memory, uint256) {
        return _part32(providerSessions[provider_], offset_, limit_);
    }

    function getIsProviderApprovalUsed(bytes calldata approval_) external view returns (bool) {
        return approvalUsed[approval_];
    }

    /// Looks at the newest `iterations_` entries.
    function getUserStakesOnHold(address user_, uint8 iterations_) external view returns (uint256 available, uint256 hold) {
        OnHold[] storage h = stakesOnHold[user_];
        uint256 n = h.length;
        for (uint256 i = n; i > 0 && n - i < iterations_; i--) {
            if (block.timestamp >= h[i - 1].releaseAt) available += h[i - 1].amount;
            else hold += h[i - 1].amount;
        }
    }

    function withdrawUserStakes(address user_, uint8 iterations_) external {
        _validateDelegatee(msg.sender, user_, DELEGATION_RULES_SESSION);
        OnHold[] storage h = stakesOnHold[user_];
        uint256 amount = 0;
        uint256 seen = 0;
        for (uint256 i = h.length; i > 0 && seen < iterations_; i--) {
            seen++;
            if (block.timestamp < h[i - 1].releaseAt) continue;
            amount += h[i - 1].amount;
            h[i - 1] = h[h.length - 1];
            h.pop();
        }
        if (amount == 0) revert SessionUserAmountToWithdrawIsZero();
        _push(user_, amount);
        emit UserWithdrawn(user_, amount);
    }

    // ================================================================ signatures (§3.6 step 5)
    /// Accepted signers: the provider, a delegate with delegation.rules.provider, or the owner()
    /// of a provider that is a contract.
    function _isValidProviderReceipt(address provider_, bytes calldata data_, bytes calldata signature_) private view returns (bool) {
        address signer = _recover(_ethSignedHash(keccak256(data_)), signature_);
        if (signer == provider_) return true;
        if (isRightsDelegated(signer, provider_, DELEGATION_RULES_PROVIDER)) return true;
        if (provider_.code.length > 0) {
            (bool ok, bytes memory ret) = provider_.staticcall(abi.encodeWithSignature("owner()"));
            if (ok && ret.length >= 32 && abi.decode(ret, (address)) == signer) return true;
        }
        return false;
    }

    function _ethSignedHash(bytes32 hash_) private pure returns (bytes32) {
        return keccak256(abi.encodePacked("\x19Ethereum Signed Message:\n32", hash_));
    }

    /// OpenZeppelin 4.9.2 ECDSA.recover: Error(string) reverts, as §3.5 describes.
    function _recover(bytes32 hash_, bytes calldata sig_) private pure returns (address signer) {
        if (sig_.length != 65) revert("ECDSA: invalid signature length");
        bytes32 r = bytes32(sig_[0:32]);
        bytes32 s = bytes32(sig_[32:64]);
        uint8 v = uint8(sig_[64]);
        if (uint256(s) > 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0) {
            revert("ECDSA: invalid signature 's' value");
        }
        signer = ecrecover(hash_, v, r, s);
        if (signer == address(0)) revert("ECDSA: invalid signature");
    }

    // ================================================================ helpers
    function _validateDelegatee(address delegatee_, address delegator_, bytes32 rights_) private view {
        if (delegatee_ != delegator_ && !isRightsDelegated(delegatee_, delegator_, rights_)) {
            revert InsufficientRightsForOperation(delegator_, delegatee_);
        }
    }

    function _now() private view returns (uint128) {
        return uint128(block.timestamp);
    }

    /// SafeERC20-like: bubble the token's revert data up, reject a `false` return.
    function _tokenCall(bytes memory data_) private {
        (bool ok, bytes memory ret) = address(token).call(data_);
        if (!ok) {
            assembly {
                revert(add(ret, 32), mload(ret))
            }
        }
        require(ret.length == 0 || abi.decode(ret, (bool)), "SafeERC20: ERC20 operation did not succeed");
    }

    function _pull(address from_, uint256 amount_) private {
        _tokenCall(abi.encodeCall(IMorToken.transferFrom, (from_, address(this), amount_)));
    }

    function _push(address to_, uint256 amount_) private {
        _tokenCall(abi.encodeCall(IMorToken.transfer, (to_, amount_)));
    }

    /// Running mean and sum of squares (Welford), as LibSD; n is the count including `val`.
    function _sdAdd(SD storage sd, int64 val, int64 n) private {
        if (n <= 1) {
            sd.mean = val;
            sd.sqSum = 0;
            return;
        }
        int64 oldMean = sd.mean;
        sd.mean = oldMean + (val - oldMean) / n;
        sd.sqSum = sd.sqSum + (val - oldMean) * (val - sd.mean);
    }

    /// Inverse of _sdAdd; n is the count including `val` (before removal).
    function _sdRemove(SD storage sd, int64 val, int64 n) private {
        if (n <= 1) {
            sd.mean = 0;
            sd.sqSum = 0;
            return;
        }
        int64 oldMean = sd.mean;
        sd.mean = (n * oldMean - val) / (n - 1);
        sd.sqSum = sd.sqSum - (val - oldMean) * (val - sd.mean);
        if (sd.sqSum < 0) sd.sqSum = 0;
    }

    /// §3.7: provider-model running means, and model-level stats over the provider means.
    function _setStats(ProviderModelStats storage p, ModelStats storage m, uint32 tps, uint32 ttft, uint128 duration) private {
        if (p.successCount > 0) {
            int64 c = int64(uint64(m.count));
            _sdRemove(m.tpsScaled1000, p.tpsScaled1000.mean, c);
            _sdRemove(m.ttftMs, p.ttftMs.mean, c);
            _sdRemove(m.totalDuration, int64(uint64(p.totalDuration)), c);
        } else {
            m.count++;
        }
        p.successCount++;
        p.totalDuration += uint32(duration);
        int64 n = int64(uint64(p.successCount));
        _sdAdd(p.tpsScaled1000, int64(uint64(tps)), n);
        _sdAdd(p.ttftMs, int64(uint64(ttft)), n);
        int64 mc = int64(uint64(m.count));
        _sdAdd(m.tpsScaled1000, p.tpsScaled1000.mean, mc);
        _sdAdd(m.ttftMs, p.ttftMs.mean, mc);
        _sdAdd(m.totalDuration, int64(uint64(p.totalDuration)), mc);
    }

    function _add32(List32 storage l, bytes32 v) private {
        if (l.pos[v] != 0) return;
        l.items.push(v);
        l.pos[v] = l.items.length;
    }

    function _remove32(List32 storage l, bytes32 v) private {
        uint256 p = l.pos[v];
        if (p == 0) return;
        bytes32 last = l.items[l.items.length - 1];
        l.items[p - 1] = last;
        l.pos[last] = p;
        l.items.pop();
        delete l.pos[v];
    }

    function _addAddr(ListAddr storage l, address v) private {
        if (l.pos[v] != 0) return;
        l.items.push(v);
        l.pos[v] = l.items.length;
    }

    function _removeAddr(ListAddr storage l, address v) private {
        uint256 p = l.pos[v];
        if (p == 0) return;
        address last = l.items[l.items.length - 1];
        l.items[p - 1] = last;
        l.pos[last] = p;
        l.items.pop();
        delete l.pos[v];
    }

    /// Paginator.part (§3.2): elements [offset, min(offset+limit, len)) and the total length.
    function _part32(bytes32[] storage a, uint256 offset_, uint256 limit_) private view returns (bytes32[] memory out, uint256 total) {
        total = a.length;
        uint256 n = offset_ < total ? total - offset_ : 0;
        if (limit_ < n) n = limit_;
        out = new bytes32[](n);
        for (uint256 i = 0; i < n; i++) out[i] = a[offset_ + i];
    }

    function _partAddr(address[] storage a, uint256 offset_, uint256 limit_) private view returns (address[] memory out, uint256 total) {
        total = a.length;
        uint256 n = offset_ < total ? total - offset_ : 0;
        if (limit_ < n) n = limit_;
        out = new address[](n);
        for (uint256 i = 0; i < n; i++) out[i] = a[offset_ + i];
    }
}
