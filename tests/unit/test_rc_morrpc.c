/*
 * rc_morrpc: every message line of ../shared/vectors/morpheus-vectors.txt (§2.9) reproduced byte
 * for byte (signed bytes, signatures, wire), parsed back and verified; then the parser's Go
 * compatibility (key folding, unknown keys, order) and its precise rejections.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <router-core/rc_keccak.h>
#include <router-core/rc_morrpc.h>

/* Hardhat/Anvil development keys #0 (consumer), #1 (provider), #2 (historical vector). */
static const char USER_PRIV[] = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
static const char PROVIDER_PRIV[] =
        "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
static const char HIST_PRIV[] = "5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a";
static const char HIST_USER[] = "0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc";
static const char HIST_KEY[] =
        "0x049d9031e97dd78ff8c15aa86939de9b1e791066a0224e331bc962a2099a7b1f04"
        "64b8bbafe1535f2301c72c2cb3535b172da30b02686ab0393d348614f157fbdb";
static const char HIST_BID[] = "0xb0119306909b29feb8a2a30f343c32f7ceb0927325a4a6e4936d11d1236556c3";
static const char NONCE[] = "0x0102030405060708";
static const uint8_t IV[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

/* ---- §2.9 lines ------------------------------------------------------------------------------ */
static const char REQ_SIGNED[] =
        "{\"user\":\"0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266\",\"key\":\"0x048318535b54105d4a7"
        "aae60c08fc45f9687181b4fdfc625bd1a753fa7397fed753547f11ca8696646f2f3acb08e31016afac23e630"
        "c5d11f59f61fef57b0d2aa5\",\"spend\":\"1000000000000000000\",\"timestamp\":1735689600000,"
        "\"bidid\":\"0x694714f934f06307cb2d0b3af993c376110bfad4c9ab5958be519c937b59ab50\"}";
static const char REQ_SIG[] =
        "0xf9e83a046c91764cd4131e7240cfb3c8df877b7e66d2faee8fe88b3271f3234335db05953663c97d8a203c"
        "d2f8b0f4e194e724e7010a67cd1eb634c3e42ae64f00";
static const char REQ_WIRE[] =
        "{\"id\":\"a1b2c3d4\",\"method\":\"session.request\",\"params\":{\"signature\":\"0xf9e83a"
        "046c91764cd4131e7240cfb3c8df877b7e66d2faee8fe88b3271f3234335db05953663c97d8a203cd2f8b0f4"
        "e194e724e7010a67cd1eb634c3e42ae64f00\",\"user\":\"0xf39fd6e51aad88f6f4ce6ab8827279cfffb9"
        "2266\",\"key\":\"0x048318535b54105d4a7aae60c08fc45f9687181b4fdfc625bd1a753fa7397fed75354"
        "7f11ca8696646f2f3acb08e31016afac23e630c5d11f59f61fef57b0d2aa5\",\"spend\":\"100000000000"
        "0000000\",\"timestamp\":1735689600000,\"bidid\":\"0x694714f934f06307cb2d0b3af993c376110b"
        "fad4c9ab5958be519c937b59ab50\"}}";
static const char APPROVAL[] =
        "0x694714f934f06307cb2d0b3af993c376110bfad4c9ab5958be519c937b59ab500000000000000000000000"
        "00000000000000000000000000000000000000a4b1000000000000000000000000f39fd6e51aad88f6f4ce6a"
        "b8827279cfffb92266000000000000000000000000000000000000000000000000000001941f297c7b";
static const char APPROVAL_SIG[] =
        "0xde027f31a46fa22de0015994cf8f1b994d5540d7fd05fad33a1ce8c04208625763ef5b2d9272d636e76f02"
        "ce321c56fa146806c8d56f49eab8b76e1181bcb8891c";
static const char RES_SIGNED[] =
        "{\"message\":\"0x04ba5734d8f7091719471e7f7ed6b9df170dc70cc661ca05e688601ad984f068b0d6735"
        "1e5f06073092499336ab0839ef8a521afd334e53807205fa2f08eec74f4\",\"approval\":\"0x694714f93"
        "4f06307cb2d0b3af993c376110bfad4c9ab5958be519c937b59ab50000000000000000000000000000000000"
        "000000000000000000000000000a4b1000000000000000000000000f39fd6e51aad88f6f4ce6ab8827279cff"
        "fb92266000000000000000000000000000000000000000000000000000001941f297c7b\",\"approvalSig\""
        ":\"0xde027f31a46fa22de0015994cf8f1b994d5540d7fd05fad33a1ce8c04208625763ef5b2d9272d636e76"
        "f02ce321c56fa146806c8d56f49eab8b76e1181bcb8891c\",\"user\":\"0xf39fd6e51aad88f6f4ce6ab88"
        "27279cfffb92266\",\"timestamp\":1735689600123}";
static const char RES_SIG[] =
        "0x06cd90927db17242250976dc7b244c2452ae707dc0ade1e36f52352697e911fc2795abf995ee8d425c10f0"
        "5b32239465b5aa2222e8ff1f8cd7caf3b29cc4559f01";
static const char RES_WIRE[] =
        "{\"id\":\"a1b2c3d4\",\"result\":{\"message\":\"0x04ba5734d8f7091719471e7f7ed6b9df170dc70"
        "cc661ca05e688601ad984f068b0d67351e5f06073092499336ab0839ef8a521afd334e53807205fa2f08eec7"
        "4f4\",\"approval\":\"0x694714f934f06307cb2d0b3af993c376110bfad4c9ab5958be519c937b59ab500"
        "00000000000000000000000000000000000000000000000000000000000a4b1000000000000000000000000f"
        "39fd6e51aad88f6f4ce6ab8827279cfffb922660000000000000000000000000000000000000000000000000"
        "00001941f297c7b\",\"approvalSig\":\"0xde027f31a46fa22de0015994cf8f1b994d5540d7fd05fad33a"
        "1ce8c04208625763ef5b2d9272d636e76f02ce321c56fa146806c8d56f49eab8b76e1181bcb8891c\",\"use"
        "r\":\"0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266\",\"timestamp\":1735689600123,\"signatu"
        "re\":\"0x06cd90927db17242250976dc7b244c2452ae707dc0ade1e36f52352697e911fc2795abf995ee8d4"
        "25c10f05b32239465b5aa2222e8ff1f8cd7caf3b29cc4559f01\"}}";
static const char PROMPT_SIGNED[] =
        "{\"sessionid\":\"0x266cda2d5d32f8441832085391c68dc8e788c9235cee5d46ae47b57e75f1c4b8\",\""
        "message\":\"{\\\"messages\\\":[{\\\"content\\\":\\\"hi\\\",\\\"role\\\":\\\"user\\\"}],\\"
        "\"model\\\":\\\"\\\",\\\"stream\\\":true}\",\"timestamp\":1735689700000}";
static const char PROMPT_SIG[] =
        "0xa9d7447105b99fc949162d2e10bccf972270e9769e7a6c283b71ce5d899a77963e9d93b0dd0479af0aefb2"
        "ca4c2da53d193071f7a59c0da3cd8d22029d79bd1600";
static const char PROMPT_WIRE[] =
        "{\"id\":\"0badf00d\",\"method\":\"session.prompt\",\"params\":{\"signature\":\"0xa9d7447"
        "105b99fc949162d2e10bccf972270e9769e7a6c283b71ce5d899a77963e9d93b0dd0479af0aefb2ca4c2da53"
        "d193071f7a59c0da3cd8d22029d79bd1600\",\"sessionid\":\"0x266cda2d5d32f8441832085391c68dc8"
        "e788c9235cee5d46ae47b57e75f1c4b8\",\"message\":\"{\\\"messages\\\":[{\\\"content\\\":\\\""
        "hi\\\",\\\"role\\\":\\\"user\\\"}],\\\"model\\\":\\\"\\\",\\\"stream\\\":true}\",\"times"
        "tamp\":1735689700000}}";
static const char ESCAPE_SIGNED[] =
        "{\"sessionid\":\"0x266cda2d5d32f8441832085391c68dc8e788c9235cee5d46ae47b57e75f1c4b8\",\""
        "message\":\"{\\\"messages\\\":[{\\\"role\\\":\\\"user\\\",\\\"content\\\":\\\"a\\u003cb "
        "\\u0026 c\\u003ed \xc3\xa9\\u2028x\\n\\\"}],\\\"stream\\\":true}\",\"timestamp\":1735689"
        "700000}";
static const char ESCAPE_SIGNED_HEX[] =
        "7b2273657373696f6e6964223a22307832363663646132643564333266383434313833323038353339316336"
        "386463386537383863393233356365653564343661653437623537653735663163346238222c226d65737361"
        "6765223a227b5c226d657373616765735c223a5b7b5c22726f6c655c223a5c22757365725c222c5c22636f6e"
        "74656e745c223a5c22615c753030336362205c753030323620635c75303033656420c3a95c7532303238785c"
        "6e5c227d5d2c5c2273747265616d5c223a747275657d222c2274696d657374616d70223a3137333536383937"
        "30303030307d";
static const char ESCAPE_SIG[] =
        "0xb2808dac4a28ccf267d2325f62b2ab1aea765db4ae22fdd3024320aa3b6a20085c4bf128d1780f01254067"
        "230f6ffd7d38f5058c61de6c1307d4a5464536391200";
static const char ECIES_PLAIN[] =
        "{\"choices\":[{\"delta\":{\"content\":\"Hello\"},\"finish_reason\":null,\"index\":0}],\""
        "created\":1735689700,\"id\":\"chatcmpl-1\",\"model\":\"gpt-4o-mini\",\"object\":\"chat.c"
        "ompletion.chunk\"}";
static const char PROMPTRES_SIGNED[] =
        "{\"message\":\"044f355bdcb7cc0af728ef3cceb9615d90684bb5b2ca5f859ab0f0b704075871aa385b6b1"
        "b8ead809ca67454d9683fcf2ba03456d6fe2c4abe2b07f0fbdbb2f1c1000102030405060708090a0b0c0d0e0"
        "fb70fac3c35028fbed321021c8dbd8f010fc57527d3bfb83537276fad526d4df39e76131d73a2dbaa854c178"
        "c30d22027e8a03fd13184531fcb97137eb62a82834fc210ace238cd47e25ed528a77b2331c928e0dcc4bd9e2"
        "a8ba302dcc4874eb28c3df38da94ea272e125b87296eb85aaa971fbfb3c7997658d79900a1c001ccd53be7c3"
        "75e6693e94d587148141732a8261f1120824bdf96918fb4ab00729cff5decc77035a1eb7e6fd0f3dd80e83ac"
        "888579b7d02f1239c2ba027cbe11b6e5b0fba3c34f338d123\",\"timestamp\":1735689700500}";
static const char PROMPTRES_SIG[] =
        "0x1c3b126fbc6914efc69896edaa7f371eb5005d833ff5233245f1285aa6032f88184c58f86b6240c8e0d55b"
        "64b7564aba58635a394cb2523f53625dc7206e505001";
static const char PROMPTRES_WIRE[] =
        "{\"id\":\"0badf00d\",\"result\":{\"message\":\"044f355bdcb7cc0af728ef3cceb9615d90684bb5b"
        "2ca5f859ab0f0b704075871aa385b6b1b8ead809ca67454d9683fcf2ba03456d6fe2c4abe2b07f0fbdbb2f1c"
        "1000102030405060708090a0b0c0d0e0fb70fac3c35028fbed321021c8dbd8f010fc57527d3bfb83537276fa"
        "d526d4df39e76131d73a2dbaa854c178c30d22027e8a03fd13184531fcb97137eb62a82834fc210ace238cd4"
        "7e25ed528a77b2331c928e0dcc4bd9e2a8ba302dcc4874eb28c3df38da94ea272e125b87296eb85aaa971fbf"
        "b3c7997658d79900a1c001ccd53be7c375e6693e94d587148141732a8261f1120824bdf96918fb4ab00729cf"
        "f5decc77035a1eb7e6fd0f3dd80e83ac888579b7d02f1239c2ba027cbe11b6e5b0fba3c34f338d123\",\"si"
        "gnature\":\"0x1c3b126fbc6914efc69896edaa7f371eb5005d833ff5233245f1285aa6032f88184c58f86b"
        "6240c8e0d55b64b7564aba58635a394cb2523f53625dc7206e505001\",\"timestamp\":1735689700500}}"
        "";
static const char DONE_CT_HEX[] =
        "04cd0f9e5e0fc81997dbbc80293aa7a5f498753af667aed160c70ff0d3d53c5d74b731af5a9237e60ac2a280"
        "e5464bffefb635f4d3ef03eb0bef2370234650e809000102030405060708090a0b0c0d0e0f34e2b0bae4e607"
        "5b4ac632ece4b363be100a8fb4ec053e12e437347b9062edfffaa8b52469fc2bd3";
static const char ERR_PLAIN[] =
        "{\"providerModelError\":{\"error\":{\"message\":\"rate limited\",\"type\":\"upstream_err"
        "or\"}}}";
static const char ERR_SIGNED[] =
        "{\"message\":\"045421b3fc2cca1f6a36f858170c23fa18f6525b1c95ce31e4fcdb6628ae7e20e309ad404"
        "484172f30c1b0031c02368c30b069d02a4c774260f9e9169d41151990000102030405060708090a0b0c0d0e0"
        "f34cadc980c04c909a318ca1800c01d85166fca4f7561bd56e8ee1dc0c03443ca4da19aa1aff20e588e5dc22"
        "52f4847418ebbcfb845d762302153c7e55bfbe39a4d65269d8298d91b7dea02f4c0e063bc47bc61ca21c2742"
        "73c8a39f6b158d34149550b86a31674d6ad8547773ce423dd53b3cb\",\"code\":400,\"data\":{\"times"
        "tamp\":1735689700600,\"signature\":\"0x\"}}";
static const char ERR_SIG[] =
        "0x502e93462d8de40fbd2e92b4a4c453782ff0166e1fbc4a22d25710ab75fc95b24bb8c6e5ef151cdb04b91e"
        "bad67e0e8ceb8049191310dc2859f19cd0f45727d900";
static const char ERR_WIRE[] =
        "{\"id\":\"0badf00d\",\"result\":null,\"error\":{\"message\":\"045421b3fc2cca1f6a36f85817"
        "0c23fa18f6525b1c95ce31e4fcdb6628ae7e20e309ad404484172f30c1b0031c02368c30b069d02a4c774260"
        "f9e9169d41151990000102030405060708090a0b0c0d0e0f34cadc980c04c909a318ca1800c01d85166fca4f"
        "7561bd56e8ee1dc0c03443ca4da19aa1aff20e588e5dc2252f4847418ebbcfb845d762302153c7e55bfbe39a"
        "4d65269d8298d91b7dea02f4c0e063bc47bc61ca21c274273c8a39f6b158d34149550b86a31674d6ad854777"
        "3ce423dd53b3cb\",\"code\":400,\"data\":{\"timestamp\":1735689700600,\"signature\":\"0x50"
        "2e93462d8de40fbd2e92b4a4c453782ff0166e1fbc4a22d25710ab75fc95b24bb8c6e5ef151cdb04b91ebad6"
        "7e0e8ceb8049191310dc2859f19cd0f45727d900\"}}}";
static const char INFRA_WIRE[] =
        "{\"id\":\"a1b2c3d4\",\"result\":null,\"error\":{\"message\":\"no capacity\",\"code\":400"
        ",\"data\":{\"timestamp\":1735689600123,\"signature\":\"0x00\"}}}";
static const char REPORTREQ_SIGNED[] =
        "{\"message\":\"0x266cda2d5d32f8441832085391c68dc8e788c9235cee5d46ae47b57e75f1c4b8\",\"ti"
        "mestamp\":1735690000000}";
static const char REPORTREQ_SIG[] =
        "0x78f25ceedccee2740c072c88a565492002a32d1d0c9f4874788f9c937df0e5b84ebe96819a978cc2627c59"
        "03b26c0af9d39aa492516fddec07b22bda7b63af3100";
static const char REPORTREQ_WIRE[] =
        "{\"id\":\"c0ffee00\",\"method\":\"session.report\",\"params\":{\"signature\":\"0x78f25ce"
        "edccee2740c072c88a565492002a32d1d0c9f4874788f9c937df0e5b84ebe96819a978cc2627c5903b26c0af"
        "9d39aa492516fddec07b22bda7b63af3100\",\"message\":\"0x266cda2d5d32f8441832085391c68dc8e7"
        "88c9235cee5d46ae47b57e75f1c4b8\",\"timestamp\":1735690000000}}";
static const char RECEIPT[] =
        "0x266cda2d5d32f8441832085391c68dc8e788c9235cee5d46ae47b57e75f1c4b80000000000000000000000"
        "00000000000000000000000000000000000000a4b10000000000000000000000000000000000000000000000"
        "00000001941f2f977a000000000000000000000000000000000000000000000000000000000000a604000000"
        "000000000000000000000000000000000000000000000000000000015e000000000000000000000000000000"
        "0000000000000000000000000000000078000000000000000000000000000000000000000000000000000000"
        "0000000320";
static const char SIGNED_REPORT[] =
        "0x0c98fb37b7c47f9538ec2ec50baa0eef9f70afb5a5def91540e79d24a44c2c11326637683965fbbc534b8a"
        "df5394e080c35ad24d81d444969afef39a338bde2b1b";
static const char REPORTRES_SIGNED[] =
        "{\"message\":\"0x266cda2d5d32f8441832085391c68dc8e788c9235cee5d46ae47b57e75f1c4b80000000"
        "00000000000000000000000000000000000000000000000000000a4b10000000000000000000000000000000"
        "00000000000000000000001941f2f977a0000000000000000000000000000000000000000000000000000000"
        "00000a604000000000000000000000000000000000000000000000000000000000000015e000000000000000"
        "0000000000000000000000000000000000000000000000078000000000000000000000000000000000000000"
        "0000000000000000000000320\",\"signedReport\":\"0x0c98fb37b7c47f9538ec2ec50baa0eef9f70afb"
        "5a5def91540e79d24a44c2c11326637683965fbbc534b8adf5394e080c35ad24d81d444969afef39a338bde2"
        "b1b\",\"timestamp\":1735690000250}";
static const char REPORTRES_SIG[] =
        "0x5e152519db97a5b7892a22b9fe306093ac4774741fe6e7a106143370204bf1b536521aa58c66cb8088ecf2"
        "d0a9b2c992760138acf9e36a3c3080d5b2f7f2796b01";
static const char REPORTRES_WIRE[] =
        "{\"id\":\"c0ffee00\",\"result\":{\"message\":\"0x266cda2d5d32f8441832085391c68dc8e788c92"
        "35cee5d46ae47b57e75f1c4b8000000000000000000000000000000000000000000000000000000000000a4b"
        "1000000000000000000000000000000000000000000000000000001941f2f977a00000000000000000000000"
        "0000000000000000000000000000000000000a60400000000000000000000000000000000000000000000000"
        "0000000000000015e00000000000000000000000000000000000000000000000000000000000000780000000"
        "000000000000000000000000000000000000000000000000000000320\",\"signedReport\":\"0x0c98fb3"
        "7b7c47f9538ec2ec50baa0eef9f70afb5a5def91540e79d24a44c2c11326637683965fbbc534b8adf5394e08"
        "0c35ad24d81d444969afef39a338bde2b1b\",\"signature\":\"0x5e152519db97a5b7892a22b9fe306093"
        "ac4774741fe6e7a106143370204bf1b536521aa58c66cb8088ecf2d0a9b2c992760138acf9e36a3c3080d5b2"
        "f7f2796b01\",\"timestamp\":1735690000250}}";
static const char PING_SIGNED[] = "{\"nonce\":\"0x0102030405060708\",\"signature\":\"0x\"}";
static const char PING_WIRE[] =
        "{\"id\":\"0\",\"method\":\"network.ping\",\"params\":{\"nonce\":\"0x0102030405060708\",\""
        "signature\":\"0xfa242abd931d07462b4c8652986a98b791491e9e9c43d70bcccfe6669c46c5f76ac71d0c"
        "cf0f0d10963af48c673cc2abdc8a7e33324dd8a250b9483d50efbcd301\"}}";
static const char PONG_SIGNED[] =
        "{\"nonce\":\"0x0102030405060708\",\"version\":\"v7.0.0\",\"signature\":\"0x\"}";
static const char PONG_SIG[] =
        "0x651a804ab53fa27b9a84facd6c6869fac73ade49c1c52acb3f740b97d99e094732521a99ecd526d204f271"
        "6c238280561dee7dddbbe3830cd6c946cb58a4923700";
static const char PONG_WIRE[] =
        "{\"id\":\"0\",\"result\":{\"nonce\":\"0x0102030405060708\",\"version\":\"v7.0.0\",\"sign"
        "ature\":\"0x651a804ab53fa27b9a84facd6c6869fac73ade49c1c52acb3f740b97d99e094732521a99ecd5"
        "26d204f2716c238280561dee7dddbbe3830cd6c946cb58a4923700\"}}";
static const char HIST_SIGNED[] =
        "{\"user\":\"0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc\",\"key\":\"0x049d9031e97dd78ff8c"
        "15aa86939de9b1e791066a0224e331bc962a2099a7b1f0464b8bbafe1535f2301c72c2cb3535b172da30b026"
        "86ab0393d348614f157fbdb\",\"spend\":\"270233162839357259772\",\"timestamp\":171925347705"
        "4,\"bidid\":\"0xb0119306909b29feb8a2a30f343c32f7ceb0927325a4a6e4936d11d1236556c3\"}";
static const char HIST_KECCAK[] =
        "0x14f6bcff3639672bdd84a1f257ab83630c3a4370a209a3c5166e69bed3cd07b2";
static const char HIST_SIG[] =
        "0xdc66ce09efbecdd77f273a82d672af222d3cf2afb17472cfa44dd580906563d41f954b8667f46d8d5259ec"
        "6f55889773d94236372e8632c1ba3efa4b2c5ad9fa00";
static const char REQ_KECCAK[] =
        "0x1e3ffa4c0c8f03df8cd56bb4fb4f0f882084c836bd5e1340b7bde07d47b7478a";
static const char USER_PUB[] =
        "0x048318535b54105d4a7aae60c08fc45f9687181b4fdfc625bd1a753fa7397fed753547f11ca8696646f2f3"
        "acb08e31016afac23e630c5d11f59f61fef57b0d2aa5";
static const char PROVIDER_PUB[] =
        "0x04ba5734d8f7091719471e7f7ed6b9df170dc70cc661ca05e688601ad984f068b0d67351e5f06073092499"
        "336ab0839ef8a521afd334e53807205fa2f08eec74f4";
static const char USER_ADDR[] = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
static const char PROVIDER_ADDR[] = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
static const char BID_ID[] = "0x694714f934f06307cb2d0b3af993c376110bfad4c9ab5958be519c937b59ab50";
static const char SESSION_ID[] =
        "0x266cda2d5d32f8441832085391c68dc8e788c9235cee5d46ae47b57e75f1c4b8";

struct fx {
	struct rc_secp_privkey user, provider;
	uint8_t user_pub[65], provider_pub[65], user_addr[20], provider_addr[20];
	uint8_t bid_id[32], session_id[32];
	struct rc_buf out, scratch, plain;
};

/* Decode hex (optional 0x) that must hold exactly n bytes. */
static void unhex(const char *hex, uint8_t *out, size_t n)
{
	assert_int_equal(rc_hex_decode_exact(hex, strlen(hex), out, n, NULL), RC_OK);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);
	if (!f)
		return -1;
	if (rc_secp_privkey_from_hex(&f->user, USER_PRIV, 64, NULL) ||
	    rc_secp_privkey_from_hex(&f->provider, PROVIDER_PRIV, 64, NULL))
		return -1;
	unhex(USER_PUB, f->user_pub, 65);
	unhex(PROVIDER_PUB, f->provider_pub, 65);
	unhex(USER_ADDR, f->user_addr, 20);
	unhex(PROVIDER_ADDR, f->provider_addr, 20);
	unhex(BID_ID, f->bid_id, 32);
	unhex(SESSION_ID, f->session_id, 32);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	rc_secp_privkey_release(&f->user);
	rc_secp_privkey_release(&f->provider);
	rc_buf_release(&f->out);
	rc_buf_release(&f->scratch);
	rc_buf_release(&f->plain);
	free(f);
	return 0;
}

static void assert_buf(const struct rc_buf *b, const char *want)
{
	if (b->len != strlen(want) || memcmp(b->ptr, want, b->len) != 0)
		fail_msg("got  %.*s\nwant %s", (int)b->len, b->ptr ? b->ptr : "", want);
}

static void assert_sig(const struct rc_morrpc_body *b, const char *want_hex)
{
	uint8_t want[65];
	unhex(want_hex, want, 65);
	assert_int_equal(b->sig_len, 65);
	assert_memory_equal(b->sig, want, 65);
}

/* Signed bytes, signature and wire of a request built from fields, then parse + verify back. */
static void check_request(struct fx *f, struct rc_morrpc_body *b, const struct rc_secp_privkey *k,
                          const char *id, const char *signed_bytes, const char *sig,
                          const char *wire, const uint8_t *verify_pub)
{
	rc_buf_reset(&f->out);
	assert_int_equal(rc_morrpc_signed_bytes(b, &f->out), RC_OK);
	assert_buf(&f->out, signed_bytes);
	assert_int_equal(rc_morrpc_sign(b, k, &f->scratch), RC_OK);
	if (sig)
		assert_sig(b, sig);
	rc_buf_reset(&f->out);
	assert_int_equal(rc_morrpc_encode_request(b, (struct rc_str){id, strlen(id)}, &f->out),
	                 RC_OK);
	assert_buf(&f->out, wire);

	struct rc_morrpc_msg m;
	struct rc_morrpc_body d;
	assert_int_equal(rc_morrpc_parse_request(&m, wire, strlen(wire), NULL), RC_OK);
	assert_int_equal(m.type, b->type);
	assert_int_equal(m.id.len, strlen(id));
	assert_memory_equal(m.id.ptr, id, m.id.len);
	assert_int_equal(rc_morrpc_decode(&d, m.type, m.params, NULL), RC_OK);
	rc_buf_reset(&f->out);
	assert_int_equal(rc_morrpc_signed_bytes(&d, &f->out), RC_OK);
	assert_buf(&f->out, signed_bytes);
	if (verify_pub)
		assert_int_equal(rc_morrpc_verify(&d, verify_pub, &f->scratch), RC_OK);
	rc_morrpc_msg_release(&m);
}

static void check_response(struct fx *f, struct rc_morrpc_body *b, const char *id,
                           const char *signed_bytes, const char *sig, const char *wire)
{
	rc_buf_reset(&f->out);
	assert_int_equal(rc_morrpc_signed_bytes(b, &f->out), RC_OK);
	assert_buf(&f->out, signed_bytes);
	assert_int_equal(rc_morrpc_sign(b, &f->provider, &f->scratch), RC_OK);
	assert_sig(b, sig);
	rc_buf_reset(&f->out);
	assert_int_equal(rc_morrpc_encode_response(b, (struct rc_str){id, strlen(id)}, &f->out),
	                 RC_OK);
	assert_buf(&f->out, wire);

	struct rc_morrpc_msg m;
	struct rc_morrpc_body d;
	assert_int_equal(rc_morrpc_parse_response(&m, wire, strlen(wire), NULL), RC_OK);
	assert_int_equal(rc_morrpc_decode(&d, b->type, m.result, NULL), RC_OK);
	assert_int_equal(rc_morrpc_verify(&d, f->provider_pub, &f->scratch), RC_OK);
	rc_buf_reset(&f->out);
	assert_int_equal(rc_morrpc_signed_bytes(&d, &f->out), RC_OK);
	assert_buf(&f->out, signed_bytes);
	rc_morrpc_msg_release(&m);
}

static void test_rc_morrpc__session_request_vector(void **state)
{
	struct fx *f = *state;
	struct rc_morrpc_body b = {.type = RC_MORRPC_SESSION_REQ};
	memcpy(b.u.session_req.user, f->user_addr, 20);
	memcpy(b.u.session_req.key, f->user_pub, 65);
	assert_int_equal(rc_u256_parse_dec(&b.u.session_req.spend, "1000000000000000000", 19, NULL),
	                 RC_OK);
	b.u.session_req.timestamp = 1735689600000ull;
	memcpy(b.u.session_req.bid_id, f->bid_id, 32);
	uint8_t h[32], want_h[32];
	rc_keccak256(REQ_SIGNED, strlen(REQ_SIGNED), h);
	unhex(REQ_KECCAK, want_h, 32);
	assert_memory_equal(h, want_h, 32);
	/* the provider verifies with the key carried in the request itself */
	check_request(f, &b, &f->user, "a1b2c3d4", REQ_SIGNED, REQ_SIG, REQ_WIRE, f->user_pub);
}

/* §2.9.1: the historical request re-signed in today's canonical form. */
static void test_rc_morrpc__historical_request_current_form(void **state)
{
	struct fx *f = *state;
	struct rc_secp_privkey k;
	uint8_t key[65];
	assert_int_equal(rc_secp_privkey_from_hex(&k, HIST_PRIV, 64, NULL), RC_OK);
	struct rc_morrpc_body b = {.type = RC_MORRPC_SESSION_REQ};
	unhex(HIST_USER, b.u.session_req.user, 20);
	unhex(HIST_KEY, key, 65);
	memcpy(b.u.session_req.key, key, 65);
	assert_int_equal(
	        rc_u256_parse_dec(&b.u.session_req.spend, "270233162839357259772", 21, NULL),
	        RC_OK);
	b.u.session_req.timestamp = 1719253477054ull;
	unhex(HIST_BID, b.u.session_req.bid_id, 32);
	rc_buf_reset(&f->out);
	assert_int_equal(rc_morrpc_signed_bytes(&b, &f->out), RC_OK);
	assert_buf(&f->out, HIST_SIGNED);
	uint8_t h[32], want_h[32];
	rc_keccak256(f->out.ptr, f->out.len, h);
	unhex(HIST_KECCAK, want_h, 32);
	assert_memory_equal(h, want_h, 32);
	assert_int_equal(rc_morrpc_sign(&b, &k, &f->scratch), RC_OK);
	assert_sig(&b, HIST_SIG);
	assert_int_equal(rc_morrpc_verify(&b, key, &f->scratch), RC_OK);
	rc_secp_privkey_release(&k);
}

static void test_rc_morrpc__session_response_vector(void **state)
{
	struct fx *f = *state;
	struct rc_morrpc_body b = {.type = RC_MORRPC_SESSION_RES};
	memcpy(b.u.session_res.provider_key, f->provider_pub, 65);
	unhex(APPROVAL, b.u.session_res.approval, 128);
	/* approvalSig is EIP-191 with v = 27/28 (§2.5.2) */
	assert_int_equal(rc_secp_sign_eth_message(&f->provider, b.u.session_res.approval, 128,
	                                          b.u.session_res.approval_sig),
	                 RC_OK);
	uint8_t want[65];
	unhex(APPROVAL_SIG, want, 65);
	assert_memory_equal(b.u.session_res.approval_sig, want, 65);
	memcpy(b.u.session_res.user, f->user_addr, 20);
	b.u.session_res.timestamp = 1735689600123ull;
	check_response(f, &b, "a1b2c3d4", RES_SIGNED, RES_SIG, RES_WIRE);
	/* the consumer verifies with the pubkey inside the reply (§2.3 table) */
	struct rc_morrpc_msg m;
	struct rc_morrpc_body d;
	assert_int_equal(rc_morrpc_parse_response(&m, RES_WIRE, strlen(RES_WIRE), NULL), RC_OK);
	assert_int_equal(rc_morrpc_decode(&d, RC_MORRPC_SESSION_RES, m.result, NULL), RC_OK);
	assert_int_equal(rc_morrpc_verify(&d, d.u.session_res.provider_key, &f->scratch), RC_OK);
	rc_morrpc_msg_release(&m);
}

static void test_rc_morrpc__prompt_request_vectors(void **state)
{
	struct fx *f = *state;
	static const char inner[] = "{\"messages\":[{\"content\":\"hi\",\"role\":\"user\"}],"
	                            "\"model\":\"\",\"stream\":true}";
	struct rc_morrpc_body b = {.type = RC_MORRPC_PROMPT_REQ};
	memcpy(b.u.prompt_req.session_id, f->session_id, 32);
	b.u.prompt_req.message = RC_STR_LIT(inner);
	b.u.prompt_req.timestamp = 1735689700000ull;
	check_request(f, &b, &f->user, "0badf00d", PROMPT_SIGNED, PROMPT_SIG, PROMPT_WIRE,
	              f->user_pub);

	/* ESCAPE: raw < & > é U+2028 \n in the decoded string; Go escapes them when signing */
	static const char tricky[] = "{\"messages\":[{\"role\":\"user\",\"content\":\"a<b & c>d "
	                             "\xc3\xa9\xe2\x80\xa8x\n\"}],\"stream\":true}";
	b.u.prompt_req.message = RC_STR_LIT(tricky);
	b.sig_len = 0;
	rc_buf_reset(&f->out);
	assert_int_equal(rc_morrpc_signed_bytes(&b, &f->out), RC_OK);
	assert_buf(&f->out, ESCAPE_SIGNED);
	uint8_t hexbytes[sizeof ESCAPE_SIGNED_HEX / 2];
	unhex(ESCAPE_SIGNED_HEX, hexbytes, sizeof hexbytes);
	assert_memory_equal(f->out.ptr, hexbytes, sizeof hexbytes);
	assert_int_equal(rc_morrpc_sign(&b, &f->user, &f->scratch), RC_OK);
	assert_sig(&b, ESCAPE_SIG);

	/* a C consumer that sends the raw characters on the wire still verifies at the provider */
	rc_buf_reset(&f->out);
	assert_int_equal(rc_morrpc_encode_request(&b, RC_STR_LIT("0badf00d"), &f->out), RC_OK);
	static const char raw_wire_prefix[] =
	        "{\"id\":\"x\",\"method\":\"session.prompt\",\"params\":"
	        "{\"message\":\"{\\\"messages\\\":[{\\\"role\\\":"
	        "\\\"user\\\",\\\"content\\\":\\\"a<b & c>d \xc3\xa9"
	        "\xe2\x80\xa8x\\n\\\"}],\\\"stream\\\":true}\",";
	char raw[1024];
	int n = snprintf(raw, sizeof raw,
	                 "%s\"timestamp\":1735689700000,\"sessionid\":\"%s\","
	                 "\"signature\":\"0x",
	                 raw_wire_prefix, SESSION_ID);
	for (int i = 0; i < 65; i++)
		n += snprintf(raw + n, sizeof raw - (size_t)n, "%02x", b.sig[i]);
	n += snprintf(raw + n, sizeof raw - (size_t)n, "\"}}");
	struct rc_morrpc_msg m;
	struct rc_morrpc_body d;
	assert_int_equal(rc_morrpc_parse_request(&m, raw, (size_t)n, NULL), RC_OK);
	assert_int_equal(rc_morrpc_decode(&d, RC_MORRPC_PROMPT_REQ, m.params, NULL), RC_OK);
	assert_int_equal(d.u.prompt_req.message.len, sizeof tricky - 1);
	assert_int_equal(rc_morrpc_verify(&d, f->user_pub, &f->scratch), RC_OK);
	rc_morrpc_msg_release(&m);
}

static void test_rc_morrpc__prompt_response_chunk_vectors(void **state)
{
	struct fx *f = *state;
	uint8_t eph[32];
	memset(eph, 0x11, 32);
	rc_buf_reset(&f->out);
	assert_int_equal(rc_morrpc_seal_chunk(&f->out, &f->scratch, RC_STR_LIT("0badf00d"),
	                                      f->user_pub, (const uint8_t *)ECIES_PLAIN,
	                                      strlen(ECIES_PLAIN), 1735689700500ull, &f->provider,
	                                      eph, IV),
	                 RC_OK);
	assert_buf(&f->out, PROMPTRES_WIRE);

	/* consumer side: parse, verify, decrypt */
	struct rc_morrpc_msg m;
	struct rc_morrpc_body d;
	assert_int_equal(rc_morrpc_parse_response(&m, PROMPTRES_WIRE, strlen(PROMPTRES_WIRE), NULL),
	                 RC_OK);
	assert_int_equal(rc_morrpc_open_chunk(&m, f->provider_pub, &f->user, &f->scratch, &f->plain,
	                                      &d, NULL),
	                 RC_OK);
	assert_int_equal(d.type, RC_MORRPC_PROMPT_RES);
	assert_sig(&d, PROMPTRES_SIG);
	assert_buf(&f->plain, ECIES_PLAIN);
	assert_false(rc_morrpc_is_done(rc_buf_str(&f->plain)));
	rc_buf_reset(&f->out);
	assert_int_equal(rc_morrpc_signed_bytes(&d, &f->out), RC_OK);
	assert_buf(&f->out, PROMPTRES_SIGNED);
	/* a provider key other than the one from the handshake is refused */
	assert_int_equal(
	        rc_morrpc_open_chunk(&m, f->user_pub, &f->user, &f->scratch, &f->plain, &d, NULL),
	        RC_ECRYPTO);
	rc_morrpc_msg_release(&m);

	/* "[DONE]" with the next ephemeral key: the ciphertext is the published one */
	eph[31] = 0x12;
	rc_buf_reset(&f->out);
	assert_int_equal(rc_morrpc_seal_chunk(&f->out, &f->scratch, RC_STR_LIT("0badf00d"),
	                                      f->user_pub, (const uint8_t *)"\"[DONE]\"", 8,
	                                      1735689700501ull, &f->provider, eph, IV),
	                 RC_OK);
	char want_prefix[512];
	snprintf(want_prefix, sizeof want_prefix,
	         "{\"id\":\"0badf00d\",\"result\":{\"message\":\"%s\","
	         "\"signature\":\"0x",
	         DONE_CT_HEX);
	assert_true(f->out.len > strlen(want_prefix));
	assert_memory_equal(f->out.ptr, want_prefix, strlen(want_prefix));
	assert_int_equal(rc_morrpc_parse_response(&m, f->out.ptr, f->out.len, NULL), RC_OK);
	assert_int_equal(rc_morrpc_open_chunk(&m, f->provider_pub, &f->user, &f->scratch, &f->plain,
	                                      &d, NULL),
	                 RC_OK);
	assert_true(rc_morrpc_is_done(rc_buf_str(&f->plain)));
	rc_morrpc_msg_release(&m);

	/* random ephemeral keys: still opens */
	rc_buf_reset(&f->out);
	assert_int_equal(rc_morrpc_seal_chunk(&f->out, &f->scratch, RC_STR_LIT("1"), f->user_pub,
	                                      (const uint8_t *)"{}", 2, 1, &f->provider, NULL,
	                                      NULL),
	                 RC_OK);
	assert_int_equal(rc_morrpc_parse_response(&m, f->out.ptr, f->out.len, NULL), RC_OK);
	assert_int_equal(rc_morrpc_open_chunk(&m, f->provider_pub, &f->user, &f->scratch, &f->plain,
	                                      &d, NULL),
	                 RC_OK);
	assert_buf(&f->plain, "{}");
	rc_morrpc_msg_release(&m);
}

static void test_rc_morrpc__signed_error_vector(void **state)
{
	struct fx *f = *state;
	uint8_t eph[32];
	memset(eph, 0x11, 32);
	eph[31] = 0x13;
	rc_buf_reset(&f->out);
	assert_int_equal(rc_morrpc_seal_error(&f->out, &f->scratch, RC_STR_LIT("0badf00d"),
	                                      f->user_pub, (const uint8_t *)ERR_PLAIN,
	                                      strlen(ERR_PLAIN), 1735689700600ull, &f->provider,
	                                      eph, IV),
	                 RC_OK);
	assert_buf(&f->out, ERR_WIRE);
	struct rc_morrpc_msg m;
	struct rc_morrpc_body d;
	assert_int_equal(rc_morrpc_parse_response(&m, ERR_WIRE, strlen(ERR_WIRE), NULL), RC_OK);
	assert_null(m.result);
	assert_non_null(m.error);
	assert_int_equal(rc_morrpc_open_chunk(&m, f->provider_pub, &f->user, &f->scratch, &f->plain,
	                                      &d, NULL),
	                 RC_OK);
	assert_int_equal(d.type, RC_MORRPC_ERROR);
	assert_int_equal(d.u.error.code, 400);
	assert_sig(&d, ERR_SIG);
	assert_buf(&f->plain, ERR_PLAIN);
	rc_buf_reset(&f->out);
	assert_int_equal(rc_morrpc_signed_bytes(&d, &f->out), RC_OK);
	assert_buf(&f->out, ERR_SIGNED);
	rc_morrpc_msg_release(&m);
}

static void test_rc_morrpc__unsigned_error_vector(void **state)
{
	struct fx *f = *state;
	struct rc_morrpc_body b = {.type = RC_MORRPC_ERROR};
	b.u.error.message = RC_STR_LIT("no capacity");
	b.u.error.code = 400;
	b.u.error.timestamp = 1735689600123ull;
	b.sig_len = 1; /* "0x00" */
	rc_buf_reset(&f->out);
	assert_int_equal(rc_morrpc_encode_response(&b, RC_STR_LIT("a1b2c3d4"), &f->out), RC_OK);
	assert_buf(&f->out, INFRA_WIRE);
	struct rc_morrpc_msg m;
	struct rc_morrpc_body d;
	assert_int_equal(rc_morrpc_parse_response(&m, INFRA_WIRE, strlen(INFRA_WIRE), NULL), RC_OK);
	assert_int_equal(rc_morrpc_open_chunk(&m, f->provider_pub, &f->user, &f->scratch, &f->plain,
	                                      &d, NULL),
	                 RC_OK);
	assert_int_equal(d.type, RC_MORRPC_ERROR);
	assert_int_equal(d.sig_len, 1);
	assert_buf(&f->plain, "no capacity");
	rc_morrpc_msg_release(&m);
	/* empty and missing signatures are plain text too */
	static const char *const variants[] = {
	        "{\"id\":\"1\",\"result\":null,\"error\":{\"message\":\"session "
	        "expired\",\"code\":400,"
	        "\"data\":{\"timestamp\":1,\"signature\":\"0x\"}}}",
	        "{\"id\":\"1\",\"error\":{\"message\":\"session expired\"}}",
	};
	for (size_t i = 0; i < 2; i++) {
		assert_int_equal(
		        rc_morrpc_parse_response(&m, variants[i], strlen(variants[i]), NULL),
		        RC_OK);
		assert_int_equal(rc_morrpc_open_chunk(&m, f->provider_pub, &f->user, &f->scratch,
		                                      &f->plain, &d, NULL),
		                 RC_OK);
		assert_int_equal(d.sig_len, 0);
		assert_buf(&f->plain, "session expired");
		rc_morrpc_msg_release(&m);
	}
}

static void test_rc_morrpc__report_vectors(void **state)
{
	struct fx *f = *state;
	char sid[67];
	assert_int_equal(rc_hex_encode_0x(f->session_id, 32, sid, sizeof sid), RC_OK);
	struct rc_morrpc_body b = {.type = RC_MORRPC_REPORT_REQ};
	b.u.report_req.message = (struct rc_str){sid, 66};
	b.u.report_req.timestamp = 1735690000000ull;
	check_request(f, &b, &f->user, "c0ffee00", REPORTREQ_SIGNED, REPORTREQ_SIG, REPORTREQ_WIRE,
	              f->user_pub);

	struct rc_morrpc_body r = {.type = RC_MORRPC_REPORT_RES};
	unhex(RECEIPT, r.u.report_res.receipt, 224);
	/* signedReport is EIP-191 over the receipt (§2.5.5) */
	assert_int_equal(rc_secp_sign_eth_message(&f->provider, r.u.report_res.receipt, 224,
	                                          r.u.report_res.signed_report),
	                 RC_OK);
	uint8_t want[65];
	unhex(SIGNED_REPORT, want, 65);
	assert_memory_equal(r.u.report_res.signed_report, want, 65);
	r.u.report_res.timestamp = 1735690000250ull;
	check_response(f, &r, "c0ffee00", REPORTRES_SIGNED, REPORTRES_SIG, REPORTRES_WIRE);
}

static void test_rc_morrpc__ping_pong_vectors(void **state)
{
	struct fx *f = *state;
	struct rc_morrpc_body b = {.type = RC_MORRPC_PING_REQ};
	unhex(NONCE, b.u.ping.nonce, 8);
	b.u.ping.nonce_len = 8;
	/* the provider does not verify ping signatures: no key to check against */
	check_request(f, &b, &f->user, "0", PING_SIGNED, NULL, PING_WIRE, NULL);
	struct rc_morrpc_body p = {.type = RC_MORRPC_PONG_RES};
	unhex(NONCE, p.u.ping.nonce, 8);
	p.u.ping.nonce_len = 8;
	p.u.ping.version = RC_STR_LIT("v7.0.0");
	check_response(f, &p, "0", PONG_SIGNED, PONG_SIG, PONG_WIRE);
	/* the consumer checks a pong by recovery against the on-chain provider address */
	assert_int_equal(rc_morrpc_verify_address(&p, f->provider_addr, &f->scratch), RC_OK);
	assert_int_equal(rc_morrpc_verify_address(&p, f->user_addr, &f->scratch), RC_ECRYPTO);
	p.sig[64] += 27; /* Ecrecover refuses 27/28 */
	assert_int_equal(rc_morrpc_verify_address(&p, f->provider_addr, &f->scratch), RC_ECRYPTO);
	/* version is omitempty */
	p.u.ping.version = (struct rc_str){"", 0};
	rc_buf_reset(&f->out);
	assert_int_equal(rc_morrpc_signed_bytes(&p, &f->out), RC_OK);
	assert_buf(&f->out, "{\"nonce\":\"0x0102030405060708\",\"signature\":\"0x\"}");
}

/* What the reference verifies is the re-serialization: key case, order, unknown keys and
 * whitespace on the wire do not matter. */
static void test_rc_morrpc__go_lenient_parsing_still_verifies(void **state)
{
	struct fx *f = *state;
	struct rc_morrpc_msg m;
	struct rc_morrpc_body d;
	char sig[140];
	snprintf(sig, sizeof sig, "%s", REQ_SIG);
	char wire[2048];
	/* shuffled, re-cased (incl. U+017F long s, U+212A Kelvin, U+0131 dotless i), extra keys,
	 * whitespace, upper-case hex and 0X prefixes */
	int n = snprintf(
	        wire, sizeof wire,
	        " { \"extra\" : [1,{\"a\":null}], \"ID\":\"a1b2c3d4\", \"Method\":"
	        "\"session.request\",\n\"PARAMS\": {\"BidID\":\"0X694714F934F06307CB2D0B3AF993"
	        "C376110BFAD4C9AB5958BE519C937B59AB50\",\"timeſtamp\":1735689600000,"
	        "\"\xe2\x84\xaa"
	        "ey\":\"%s\",\"spend\":1000000000000000000,\"user\":"
	        "\"0xF39FD6E51AAD88F6F4CE6AB8827279CFFFB92266\","
	        "\"unknown\":\"ignored\",\"s\xc4\xb1gnature\":\"%s\"} }",
	        USER_PUB, sig);
	assert_true(n > 0 && (size_t)n < sizeof wire);
	assert_int_equal(rc_morrpc_parse_request(&m, wire, (size_t)n, NULL), RC_OK);
	assert_int_equal(m.type, RC_MORRPC_SESSION_REQ);
	assert_int_equal(rc_morrpc_decode(&d, m.type, m.params, NULL), RC_OK);
	rc_buf_reset(&f->out);
	assert_int_equal(rc_morrpc_signed_bytes(&d, &f->out), RC_OK);
	assert_buf(&f->out, REQ_SIGNED);
	assert_int_equal(rc_morrpc_verify(&d, f->user_pub, &f->scratch), RC_OK);
	rc_morrpc_msg_release(&m);

	/* keys that fold alike: Go decodes each in document order, the last one wins */
	static const char inner[] = "\"{\\\"messages\\\":[{\\\"content\\\":\\\"hi\\\",\\\"role\\\":"
	                            "\\\"user\\\"}],\\\"model\\\":\\\"\\\",\\\"stream\\\":true}\"";
	static const struct {
		const char *stray, *second_key;
		int parse_rc, decode_rc;
	} variants[] = {
	        /* the exact same key twice is a duplicate and refused */
	        {"\"x\":0", "message", RC_EPARSE, 0},
	        /* a stray variant of the wrong type fails, as it fails Go's Unmarshal */
	        {"\"Message\":7", "MESSAGE", RC_OK, RC_EPROTO},
	        /* null is a no-op; the last string wins */
	        {"\"Message\":null", "MESSAGE", RC_OK, RC_OK},
	        {"\"Message\":\"overridden\"", "mesSAGE", RC_OK, RC_OK},
	};
	for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++) {
		n = snprintf(
		        wire, sizeof wire,
		        "{\"id\":\"0badf00d\",\"method\":\"session.prompt\",\"params\":{"
		        "\"TIMESTAMP\":1,\"signature\":\"%s\",\"sessionid\":\"%s\",\"message\":%s,"
		        "%s,\"Timestamp\":2,\"timestamp\":1735689700000,\"%s\":%s}}",
		        PROMPT_SIG, SESSION_ID, inner, variants[i].stray, variants[i].second_key,
		        inner);
		assert_true(n > 0 && (size_t)n < sizeof wire);
		struct rc_errinfo ei;
		assert_int_equal(rc_morrpc_parse_request(&m, wire, (size_t)n, NULL),
		                 variants[i].parse_rc);
		if (variants[i].parse_rc != RC_OK)
			continue;
		assert_int_equal(rc_morrpc_decode(&d, m.type, m.params, &ei),
		                 variants[i].decode_rc);
		if (variants[i].decode_rc == RC_OK) {
			assert_int_equal(d.u.prompt_req.timestamp, 1735689700000ull);
			rc_buf_reset(&f->out);
			assert_int_equal(rc_morrpc_signed_bytes(&d, &f->out), RC_OK);
			assert_buf(&f->out, PROMPT_SIGNED);
			assert_int_equal(rc_morrpc_verify(&d, f->user_pub, &f->scratch), RC_OK);
		} else {
			assert_string_equal(ei.text, "\"message\" must be a string");
		}
		rc_morrpc_msg_release(&m);
	}

	/* Go ignores v in VerifySignature: the other parity and 27/28 still verify */
	assert_int_equal(rc_morrpc_parse_request(&m, REQ_WIRE, strlen(REQ_WIRE), NULL), RC_OK);
	assert_int_equal(rc_morrpc_decode(&d, m.type, m.params, NULL), RC_OK);
	for (int v = 0; v < 4; v++) {
		d.sig[64] = (uint8_t)(v < 2 ? v : 25 + v);
		assert_int_equal(rc_morrpc_verify(&d, f->user_pub, &f->scratch), RC_OK);
	}
	/* changing any signed field breaks the signature */
	d.u.session_req.timestamp++;
	assert_int_equal(rc_morrpc_verify(&d, f->user_pub, &f->scratch), RC_ECRYPTO);
	d.u.session_req.timestamp--;
	d.u.session_req.spend.w[0]++;
	assert_int_equal(rc_morrpc_verify(&d, f->user_pub, &f->scratch), RC_ECRYPTO);
	d.u.session_req.spend.w[0]--;
	/* high-S twin of a valid signature is refused (go-ethereum VerifySignature) */
	static const uint8_t order[32] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	                                  0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe,
	                                  0xba, 0xae, 0xdc, 0xe6, 0xaf, 0x48, 0xa0, 0x3b,
	                                  0xbf, 0xd2, 0x5e, 0x8c, 0xd0, 0x36, 0x41, 0x41};
	int borrow = 0;
	for (int i = 31; i >= 0; i--) {
		int x = order[i] - d.sig[32 + i] - borrow;
		borrow = x < 0;
		d.sig[32 + i] = (uint8_t)(x + (borrow ? 256 : 0));
	}
	assert_int_equal(rc_morrpc_verify(&d, f->user_pub, &f->scratch), RC_ECRYPTO);
	d.sig_len = 64;
	assert_int_equal(rc_morrpc_verify(&d, f->user_pub, &f->scratch), RC_ECRYPTO);
	rc_morrpc_msg_release(&m);
}

/* Expand $S (a valid signature member) and $H (a valid sessionid member) in a template. */
static void expand(const char *tpl, char *out, size_t cap)
{
	static const char S[] =
	        "\"signature\":\"0xa9d7447105b99fc949162d2e10bccf972270e9769e7a6c283b71"
	        "ce5d899a77963e9d93b0dd0479af0aefb2ca4c2da53d193071f7a59c0da3cd8d2202"
	        "9d79bd1600\"";
	static const char H[] =
	        "\"sessionid\":\"0x266cda2d5d32f8441832085391c68dc8e788c9235cee5d46ae"
	        "47b57e75f1c4b8\"";
	size_t n = 0;
	for (; *tpl; tpl++) {
		const char *ins = NULL;
		if (tpl[0] == '$' && (tpl[1] == 'S' || tpl[1] == 'H'))
			ins = *++tpl == 'S' ? S : H;
		size_t len = ins ? strlen(ins) : 1;
		assert_true(n + len < cap);
		memcpy(out + n, ins ? ins : tpl, len);
		n += len;
	}
	out[n] = '\0';
}

static void test_rc_morrpc__bad_params_rejected_precisely(void **state)
{
	(void)state;
	static const struct {
		const char *params; /* session.prompt params */
		const char *text;
	} cases[] = {
	        {"{$S,$H,\"message\":\"m\"}", "missing or empty \"timestamp\""},
	        {"{$S,$H,\"message\":\"m\",\"timestamp\":0}", "missing or empty \"timestamp\""},
	        {"{$S,$H,\"message\":\"m\",\"timestamp\":\"1\"}",
	         "\"timestamp\" must be an integer"},
	        {"{$S,$H,\"message\":\"m\",\"timestamp\":1.5}", "\"timestamp\" must be an integer"},
	        {"{$S,$H,\"message\":\"m\",\"timestamp\":-1}",
	         "\"timestamp\" must not be negative"},
	        {"{$S,$H,\"message\":\"\",\"timestamp\":1}", "missing or empty \"message\""},
	        {"{$S,$H,\"message\":7,\"timestamp\":1}", "\"message\" must be a string"},
	        {"{$S,$H,\"message\":null,\"timestamp\":1}", "missing or empty \"message\""},
	        {"{$S,\"sessionid\":"
	         "\"266cda2d5d32f8441832085391c68dc8e788c9235cee5d46ae47b57e75f1c4b8\","
	         "\"message\":\"m\",\"timestamp\":1}",
	         "\"sessionid\" needs a 0x prefix"},
	        {"{$S,\"sessionid\":\"0x266c\",\"message\":\"m\",\"timestamp\":1}",
	         "\"sessionid\" is not valid hex of the right length"},
	        {"{$S,\"sessionid\":"
	         "\"0xzz6cda2d5d32f8441832085391c68dc8e788c9235cee5d46ae47b57e75f1c4b8\","
	         "\"message\":\"m\",\"timestamp\":1}",
	         "\"sessionid\" is not valid hex of the right length"},
	        {"{$S,\"sessionid\":7,\"message\":\"m\",\"timestamp\":1}",
	         "\"sessionid\" must be a hex string"},
	        {"{$S,\"sessionid\":"
	         "\"0x0000000000000000000000000000000000000000000000000000000000000000\","
	         "\"message\":\"m\",\"timestamp\":1}",
	         "missing or empty \"sessionid\""},
	        {"{\"signature\":\"0x1234\",$H,\"message\":\"m\",\"timestamp\":1}",
	         "\"signature\" must be 65 bytes"},
	        {"{\"signature\":\"0xzz\",$H,\"message\":\"m\",\"timestamp\":1}",
	         "\"signature\" is not valid hex of the right length"},
	        {"{$H,\"message\":\"m\",\"timestamp\":1}", "missing or empty \"signature\""},
	        {"{\"signature\":null,$H,\"message\":\"m\",\"timestamp\":1}",
	         "missing or empty \"signature\""},
	};
	char buf[1024];
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		expand(cases[i].params, buf, sizeof buf);
		json_error_t je;
		json_t *j = json_loads(buf, 0, &je);
		if (!j)
			fail_msg("case %zu is not JSON: %s: %s", i, buf, je.text);
		struct rc_morrpc_body d;
		struct rc_errinfo ei = {0};
		int rc = rc_morrpc_decode(&d, RC_MORRPC_PROMPT_REQ, j, &ei);
		if (rc != RC_EPROTO || strcmp(ei.text, cases[i].text) != 0)
			fail_msg("case %zu: rc %d [%s] for %s", i, rc, ei.text, buf);
		json_decref(j);
	}
	/* the same template with every field right decodes */
	expand("{$S,$H,\"message\":\"m\",\"timestamp\":1}", buf, sizeof buf);
	json_t *j = json_loads(buf, 0, NULL);
	struct rc_morrpc_body d;
	assert_int_equal(rc_morrpc_decode(&d, RC_MORRPC_PROMPT_REQ, j, NULL), RC_OK);
	assert_int_equal(rc_morrpc_decode(&d, RC_MORRPC_SESSION_REQ, j, NULL), RC_EPROTO);
	json_decref(j);
	/* spend: quoted or bare decimal, nothing else */
	static const struct {
		const char *spend;
		const char *text; /* NULL: accepted */
	} spends[] = {
	        {"\"1\"", NULL},
	        {"1", NULL},
	        {"\"007\"", NULL},
	        {"\"-1\"", "\"spend\" is not a decimal below 2^256"},
	        {"\"0x10\"", "\"spend\" is not a decimal below 2^256"},
	        {"\"\"", "\"spend\" is not a decimal below 2^256"},
	        {"\"115792089237316195423570985008687907853269984665640564039457584007913129639936"
	         "\"",
	         "\"spend\" is not a decimal below 2^256"},
	        {"-1", "\"spend\" must be a decimal string"},
	        {"1e3", "\"spend\" must be a decimal string"},
	        {"true", "\"spend\" must be a decimal string"},
	        {"null", "missing or empty \"spend\""},
	};
	for (size_t i = 0; i < sizeof spends / sizeof spends[0]; i++) {
		char tpl[768];
		snprintf(tpl, sizeof tpl,
		         "{$S,\"user\":\"%s\",\"key\":\"%s\",\"spend\":%s,\"timestamp\":1}",
		         USER_ADDR, USER_PUB, spends[i].spend);
		expand(tpl, buf, sizeof buf);
		j = json_loads(buf, 0, NULL);
		assert_non_null(j);
		struct rc_errinfo ei = {0};
		/* a good spend gets past spend to the (deliberately) missing bidid */
		assert_int_equal(rc_morrpc_decode(&d, RC_MORRPC_SESSION_REQ, j, &ei), RC_EPROTO);
		assert_string_equal(ei.text,
		                    spends[i].text ? spends[i].text : "missing or empty \"bidid\"");
		json_decref(j);
	}
}

static void test_rc_morrpc__bad_envelopes_rejected_precisely(void **state)
{
	(void)state;
	struct rc_morrpc_msg m;
	struct rc_errinfo ei;
	static const struct {
		const char *in;
		int rc;
		const char *text;
		int response;
	} cases[] = {
	        {"{\"id\":0,\"method\":\"network.ping\",\"params\":{}}", RC_EPROTO,
	         "\"id\" must be a string", 0},
	        {"{\"id\":\"0\",\"params\":{}}", RC_EPROTO, "\"method\" must be a string", 0},
	        {"{\"id\":\"0\",\"method\":\"network.ping\"}", RC_EPROTO,
	         "\"params\" must be an object", 0},
	        {"{\"id\":\"0\",\"method\":\"network.ping\",\"params\":[]}", RC_EPROTO,
	         "\"params\" must be an object", 0},
	        {"[1]", RC_EPROTO, "message is not a JSON object", 0},
	        {"{\"id\":\"0\",\"id\":\"1\",\"method\":\"x\",\"params\":{}}", RC_EPARSE,
	         "duplicate object key near '\"id\"'", 0},
	        {"{\"id\":\"0\"", RC_EPARSE, "'}' expected near end of file", 0},
	        {"{\"id\":\"\xff\"}", RC_EPARSE, "unable to decode byte 0xff near '\"'", 0},
	        {"{\"id\":\"0\",\"result\":null}", RC_EPROTO,
	         "response has neither result nor error", 1},
	        {"{\"id\":\"0\",\"result\":null,\"error\":\"boom\"}", RC_EPROTO,
	         "\"error\" must be an object", 1},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		memset(&ei, 0, sizeof ei);
		int rc = cases[i].response ? rc_morrpc_parse_response(&m, cases[i].in,
		                                                      strlen(cases[i].in), &ei)
		                           : rc_morrpc_parse_request(&m, cases[i].in,
		                                                     strlen(cases[i].in), &ei);
		if (rc != cases[i].rc || strcmp(ei.text, cases[i].text) != 0)
			fail_msg("case %zu: rc %d [%s]", i, rc, ei.text);
		assert_null(m.root); /* released on failure */
	}
	/* unknown methods parse, with no type: the caller answers with an unsigned error */
	static const char unk[] = "{\"id\":\"7\",\"method\":\"agent.call_tool\",\"params\":{}}";
	assert_int_equal(rc_morrpc_parse_request(&m, unk, strlen(unk), NULL), RC_OK);
	assert_int_equal(m.type, RC_MORRPC_NONE);
	rc_morrpc_msg_release(&m);
	rc_morrpc_msg_release(&m);
	rc_morrpc_msg_release(NULL);
	assert_int_equal(rc_morrpc_method_type(RC_STR_LIT("session.report")), RC_MORRPC_REPORT_REQ);
	assert_string_equal(rc_morrpc_method_name(RC_MORRPC_PING_REQ), "network.ping");
	assert_null(rc_morrpc_method_name(RC_MORRPC_PONG_RES));
	assert_null(rc_morrpc_method_name((enum rc_morrpc_type)99));
}

static void test_rc_morrpc__open_chunk_rejects_tampering(void **state)
{
	struct fx *f = *state;
	struct rc_morrpc_msg m;
	struct rc_morrpc_body d;
	struct rc_errinfo ei;
	size_t len = strlen(PROMPTRES_WIRE);
	char *w = malloc(len + 1);
	assert_non_null(w);
	/* flip one hex digit in each part of the message: signature no longer matches */
	const char *msg = strstr(PROMPTRES_WIRE, "\"message\":\"") + 11;
	for (size_t k = 0; k < 562; k += 37) {
		memcpy(w, PROMPTRES_WIRE, len + 1);
		size_t at = (size_t)(msg - PROMPTRES_WIRE) + k;
		w[at] = w[at] == '0' ? '1' : '0';
		assert_int_equal(rc_morrpc_parse_response(&m, w, len, NULL), RC_OK);
		assert_int_equal(rc_morrpc_open_chunk(&m, f->provider_pub, &f->user, &f->scratch,
		                                      &f->plain, &d, &ei),
		                 RC_ECRYPTO);
		assert_string_equal(ei.text, "invalid signature from provider");
		rc_morrpc_msg_release(&m);
	}
	/* properly signed garbage: the signature is fine, the hex or the blob is not */
	static const char *const bodies[] = {"zz", "0011", ""};
	static const int want[] = {RC_EPROTO, RC_ETRUNC, RC_EPROTO};
	for (size_t i = 0; i < 3; i++) {
		struct rc_morrpc_body b = {.type = RC_MORRPC_PROMPT_RES};
		b.u.prompt_res.message = (struct rc_str){bodies[i], strlen(bodies[i])};
		b.u.prompt_res.timestamp = 5;
		assert_int_equal(rc_morrpc_sign(&b, &f->provider, &f->scratch), RC_OK);
		rc_buf_reset(&f->out);
		assert_int_equal(rc_morrpc_encode_response(&b, RC_STR_LIT("x"), &f->out), RC_OK);
		assert_int_equal(rc_morrpc_parse_response(&m, f->out.ptr, f->out.len, NULL), RC_OK);
		assert_int_equal(rc_morrpc_open_chunk(&m, f->provider_pub, &f->user, &f->scratch,
		                                      &f->plain, &d, NULL),
		                 want[i]);
		rc_morrpc_msg_release(&m);
	}
	/* a chunk encrypted to another key fails the MAC */
	rc_buf_reset(&f->out);
	assert_int_equal(rc_morrpc_seal_chunk(&f->out, &f->scratch, RC_STR_LIT("1"),
	                                      f->provider_pub, (const uint8_t *)"{}", 2, 1,
	                                      &f->provider, NULL, NULL),
	                 RC_OK);
	assert_int_equal(rc_morrpc_parse_response(&m, f->out.ptr, f->out.len, NULL), RC_OK);
	assert_int_equal(rc_morrpc_open_chunk(&m, f->provider_pub, &f->user, &f->scratch, &f->plain,
	                                      &d, &ei),
	                 RC_ECRYPTO);
	assert_string_equal(ei.text, "message tag mismatch");
	rc_morrpc_msg_release(&m);
	free(w);
}

static void test_rc_morrpc__misuse_is_einval(void **state)
{
	struct fx *f = *state;
	struct rc_morrpc_body b = {.type = RC_MORRPC_PONG_RES};
	assert_int_equal(rc_morrpc_encode_request(&b, RC_STR_LIT("1"), &f->out), RC_EINVAL);
	b.type = RC_MORRPC_PING_REQ;
	assert_int_equal(rc_morrpc_encode_response(&b, RC_STR_LIT("1"), &f->out), RC_EINVAL);
	b.type = RC_MORRPC_NONE;
	assert_int_equal(rc_morrpc_signed_bytes(&b, &f->out), RC_EINVAL);
	assert_int_equal(rc_morrpc_sign(&b, &f->user, &f->scratch), RC_EINVAL);
	assert_int_equal(rc_morrpc_decode(&b, (enum rc_morrpc_type)42, NULL, NULL), RC_EINVAL);
	b.type = RC_MORRPC_PROMPT_RES;
	assert_int_equal(rc_morrpc_verify(&b, f->provider_pub, &f->scratch), RC_ECRYPTO);
	uint8_t bad_pub[65] = {0x04};
	assert_int_equal(rc_morrpc_seal_chunk(&f->out, &f->scratch, RC_STR_LIT("1"), bad_pub,
	                                      (const uint8_t *)"x", 1, 1, &f->provider, NULL, NULL),
	                 RC_EINVAL);
}

/* Open a wire response through rc_morrpc_open_chunk_bytes(). */
static int open_bytes(struct fx *f, const char *wire, size_t len, const char *want_id,
                      struct rc_morrpc_chunk_info *info, struct rc_errinfo *ei)
{
	struct rc_str id =
	        want_id ? (struct rc_str){want_id, strlen(want_id)} : (struct rc_str){NULL, 0};
	return rc_morrpc_open_chunk_bytes(wire, len, id, f->provider_pub, &f->user, &f->scratch,
	                                  &f->plain, info, ei);
}

/* The hot path: the vector chunk goes jansson-free; every other form gives the same answer. */
static void test_rc_morrpc__open_chunk_bytes_fast_and_general_agree(void **state)
{
	struct fx *f = *state;
	struct rc_morrpc_chunk_info info;
	struct rc_errinfo ei;
	size_t n = strlen(PROMPTRES_WIRE);

	assert_int_equal(open_bytes(f, PROMPTRES_WIRE, n, "0badf00d", &info, &ei), RC_OK);
	assert_true(info.fast);
	assert_int_equal(info.type, RC_MORRPC_PROMPT_RES);
	assert_true(info.is_signed);
	assert_int_equal(info.timestamp, 1735689700500ull);
	assert_int_equal(info.stage, RC_MORRPC_AT_DONE);
	assert_buf(&f->plain, ECIES_PLAIN);
	/* id not checked */
	assert_int_equal(open_bytes(f, PROMPTRES_WIRE, n, NULL, &info, &ei), RC_OK);
	/* wrong id, on both paths */
	assert_int_equal(open_bytes(f, PROMPTRES_WIRE, n, "0badf00e", &info, &ei), RC_EPROTO);
	assert_int_equal(info.stage, RC_MORRPC_AT_ID);
	assert_string_equal(ei.text, "response id does not match the request");

	/* Non-canonical but equivalent forms take the general path with the same result: keys
	 * folded, whitespace, upper-case signature hex, reordered keys, an unknown key. */
	char *w = malloc(n + 64);
	assert_non_null(w);
	static const struct {
		const char *from, *to;
	} edits[] = {
	        {"\"result\"", "\"RESULT\""},
	        {"{\"message\"", "{ \"message\""},
	        {"\"signature\":\"0x1c3b", "\"signature\":\"0X1C3B"},
	        {"\"id\":\"0badf00d\",", "\"x\":1,\"id\":\"0badf00d\","},
	};
	for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
		const char *at = strstr(PROMPTRES_WIRE, edits[i].from);
		assert_non_null(at);
		size_t pre = (size_t)(at - PROMPTRES_WIRE), fl = strlen(edits[i].from);
		size_t tl = strlen(edits[i].to);
		memcpy(w, PROMPTRES_WIRE, pre);
		memcpy(w + pre, edits[i].to, tl);
		memcpy(w + pre + tl, at + fl, n - pre - fl);
		size_t wl = n - fl + tl;
		assert_int_equal(open_bytes(f, w, wl, "0badf00d", &info, &ei), RC_OK);
		assert_false(info.fast);
		assert_buf(&f->plain, ECIES_PLAIN);
		assert_int_equal(open_bytes(f, w, wl, "other", &info, &ei), RC_EPROTO);
		assert_int_equal(info.stage, RC_MORRPC_AT_ID);
	}

	/* A tampered signature or message fails at the same stage on both paths. */
	memcpy(w, PROMPTRES_WIRE, n);
	char *sig = strstr(w, "\"signature\":\"0x") + 15;
	sig[3] = sig[3] == 'a' ? 'b' : 'a';
	assert_int_equal(open_bytes(f, w, n, "0badf00d", &info, &ei), RC_ECRYPTO);
	assert_true(info.fast);
	assert_int_equal(info.stage, RC_MORRPC_AT_VERIFY);
	memmove(w + 2, w + 1, n - 1); /* a space inside the object: general path */
	w[1] = ' ';
	assert_int_equal(open_bytes(f, w, n + 1, "0badf00d", &info, &ei), RC_ECRYPTO);
	assert_false(info.fast);
	assert_int_equal(info.stage, RC_MORRPC_AT_VERIFY);

	/* a ciphertext for another key: MAC */
	rc_buf_reset(&f->out);
	assert_int_equal(rc_morrpc_seal_chunk(&f->out, &f->scratch, RC_STR_LIT("1"),
	                                      f->provider_pub, (const uint8_t *)"{}", 2, 1,
	                                      &f->provider, NULL, NULL),
	                 RC_OK);
	assert_int_equal(open_bytes(f, f->out.ptr, f->out.len, "1", &info, &ei), RC_ECRYPTO);
	assert_true(info.fast);
	assert_int_equal(info.stage, RC_MORRPC_AT_DECRYPT);

	/* errors: signed (decrypted) and unsigned (plain text) */
	assert_int_equal(open_bytes(f, ERR_WIRE, strlen(ERR_WIRE), "0badf00d", &info, &ei), RC_OK);
	assert_int_equal(info.type, RC_MORRPC_ERROR);
	assert_true(info.is_signed);
	assert_buf(&f->plain, ERR_PLAIN);
	assert_int_equal(open_bytes(f, INFRA_WIRE, strlen(INFRA_WIRE), "a1b2c3d4", &info, &ei),
	                 RC_OK);
	assert_int_equal(info.type, RC_MORRPC_ERROR);
	assert_false(info.is_signed);
	assert_buf(&f->plain, "no capacity");

	/* not JSON, wrong shape, misuse */
	assert_int_equal(open_bytes(f, "{\"id\":", 6, NULL, &info, &ei), RC_EPARSE);
	assert_int_equal(info.stage, RC_MORRPC_AT_PARSE);
	static const char empty_result[] = "{\"id\":\"1\",\"result\":{}}";
	assert_int_equal(open_bytes(f, empty_result, sizeof empty_result - 1, "1", &info, &ei),
	                 RC_EPROTO);
	assert_int_equal(info.stage, RC_MORRPC_AT_DECODE);
	assert_int_equal(rc_morrpc_open_chunk_bytes(NULL, 1, (struct rc_str){NULL, 0},
	                                            f->provider_pub, &f->user, &f->scratch,
	                                            &f->plain, &info, NULL),
	                 RC_EINVAL);
	free(w);
}

/* Timestamps at the edge of the fast path: 18 digits fast, 19 digits general, same answer. */
static void test_rc_morrpc__open_chunk_bytes_timestamps(void **state)
{
	struct fx *f = *state;
	struct rc_morrpc_chunk_info info;
	static const uint64_t ts[] = {1, 999999999999999999ull, 1000000000000000000ull,
	                              9223372036854775807ull};
	for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) {
		rc_buf_reset(&f->out);
		assert_int_equal(rc_morrpc_seal_chunk(&f->out, &f->scratch, RC_STR_LIT("7"),
		                                      f->user_pub, (const uint8_t *)"\"[DONE]\"", 8,
		                                      ts[i], &f->provider, NULL, NULL),
		                 RC_OK);
		struct rc_buf wire = RC_BUF_INIT;
		assert_int_equal(rc_buf_append(&wire, f->out.ptr, f->out.len), RC_OK);
		assert_int_equal(open_bytes(f, wire.ptr, wire.len, "7", &info, NULL), RC_OK);
		assert_int_equal(info.fast, ts[i] < 1000000000000000000ull);
		assert_int_equal(info.timestamp, ts[i]);
		assert_true(rc_morrpc_is_done(rc_buf_str(&f->plain)));
		rc_buf_release(&wire);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_rc_morrpc__session_request_vector),
	        cmocka_unit_test(test_rc_morrpc__historical_request_current_form),
	        cmocka_unit_test(test_rc_morrpc__session_response_vector),
	        cmocka_unit_test(test_rc_morrpc__prompt_request_vectors),
	        cmocka_unit_test(test_rc_morrpc__prompt_response_chunk_vectors),
	        cmocka_unit_test(test_rc_morrpc__signed_error_vector),
	        cmocka_unit_test(test_rc_morrpc__unsigned_error_vector),
	        cmocka_unit_test(test_rc_morrpc__report_vectors),
	        cmocka_unit_test(test_rc_morrpc__ping_pong_vectors),
	        cmocka_unit_test(test_rc_morrpc__go_lenient_parsing_still_verifies),
	        cmocka_unit_test(test_rc_morrpc__bad_params_rejected_precisely),
	        cmocka_unit_test(test_rc_morrpc__bad_envelopes_rejected_precisely),
	        cmocka_unit_test(test_rc_morrpc__open_chunk_rejects_tampering),
	        cmocka_unit_test(test_rc_morrpc__misuse_is_einval),
	        cmocka_unit_test(test_rc_morrpc__open_chunk_bytes_fast_and_general_agree),
	        cmocka_unit_test(test_rc_morrpc__open_chunk_bytes_timestamps),
	};
	return cmocka_run_group_tests_name("rc_morrpc", tests, setup, teardown);
}
