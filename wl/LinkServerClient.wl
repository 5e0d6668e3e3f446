(* ::Package:: *)

(* LinkServerClient: reach a linkserver from a Wolfram Language session with
   built-in functions only (SocketConnect, BinarySerialize, BinaryDeserialize,
   byte I/O). It speaks the linkserver link protocol 1.1 of docs/protocol.md:
   the handshake (section 3, with key authentication, 3.5), frames (4), urgent
   messages (5), closing (6) and packets (8).

   Layout: the pure functions of the wire format (bytes are Lists of integers
   0..255 throughout, turned into a ByteArray only at the socket) come first;
   they are what tests/unit/test_wl_client.py checks against the Python
   implementation. The socket code follows. docs/wl-client.md says which parts
   were verified how.

   Part of linkserver, GPL-3.0-or-later. *)

BeginPackage["LinkServerClient`"];

LinkServerConnect::usage =
"LinkServerConnect[\"port@host\"] opens a link to the linkserver at that address and " <>
"returns a LinkServerConnection.\n" <>
"LinkServerConnect[\"port@host/pool\"] asks for the named kernel pool.\n" <>
"LinkServerConnect[assoc] takes the association Import[file, \"RawJSON\"] gives for a " <>
"server's connection file (its \"address\", \"key\" and \"tls\").\n" <>
"Options: \"Key\" (the server's key, a string), \"Pool\", \"Persistent\", \"Kernel\" " <>
"(docs/protocol.md section 8.6) and \"Timeout\" (seconds for the handshake, default 10).";

LinkServerEvaluate::usage =
"LinkServerEvaluate[conn, expr] sends expr unevaluated to the server's kernel and " <>
"returns its result. Print output of the remote evaluation is printed here, remote " <>
"messages are issued here as LinkServerEvaluate::remote. Aborting the local evaluation " <>
"(Alt+.) aborts the remote one. Option \"Timeout\" (default Infinity): seconds after " <>
"which the remote evaluation is aborted.";

LinkServerAbort::usage =
"LinkServerAbort[conn] sends the urgent ABORT message: the running remote evaluation " <>
"returns $Aborted.";

LinkServerClose::usage =
"LinkServerClose[conn] closes the link (CLOSE NORMAL) and the socket.";

LinkServerConnection::usage =
"LinkServerConnection[id] is an open link to a linkserver; id is its link id in hex. conn[\"Address\"], " <>
"conn[\"LinkID\"], conn[\"Pool\"], conn[\"Kernel\"] and conn[\"Open\"] describe it.";

LinkServerConnect::badname = "`1` is not a link address; write \"port@host\", e.g. \"31415@127.0.0.1\".";
LinkServerConnect::connect = "Cannot connect to `1`: `2`";
LinkServerConnect::notls = "The server at `1` speaks TLS; SocketConnect cannot make TLS connections, so this package cannot reach it. Serve without --tls on a network you trust (e.g. through an SSH tunnel), or use the Python client.";
LinkServerConnect::notlinkserver = "The peer at `1` does not speak the linkserver protocol; it said: `2`";
LinkServerConnect::version = "The server at `1` speaks protocol `2`, this package speaks `3`; the server said: `4`";
LinkServerConnect::auth = "Key authentication with `1` failed: `2`";
LinkServerConnect::needkey = "The server at `1` needs a key: give \"Key\" -> the \"key\" of its connection file. It said: `2`";
LinkServerConnect::refused = "The server at `1` refused the link: `2`";
LinkServerConnect::closed = "The server at `1` closed the connection during the handshake (a server that speaks TLS does this too).";
LinkServerConnect::timeout = "The server at `1` did not finish the handshake within `2` s.";
LinkServerConnect::select = "The server at `1` refused the pool selection: `2`";
LinkServerEvaluate::remote = "`1`";
LinkServerEvaluate::closed = "The server closed the link (`1`): `2`";
LinkServerEvaluate::broken = "The connection to `1` broke (end of stream without CLOSE).";
LinkServerEvaluate::notopen = "The link `1` is closed.";
LinkServerEvaluate::timeout = "No answer within `1` s; the remote evaluation was aborted.";
LinkServerEvaluate::protocol = "The server broke the protocol: `1`; the link is closed.";

Begin["`Private`"];

(* ------------------------------------------------------------------ bytes *)

(* u32le[n]: n as 4 bytes, little-endian (docs/protocol.md section 1). *)
u32le[n_Integer] := Reverse[IntegerDigits[n, 256, 4]];

(* u16le[n]: n as 2 bytes, little-endian (the CLOSE code, section 6). *)
u16le[n_Integer] := Reverse[IntegerDigits[n, 256, 2]];

(* fromLE[bytes]: the unsigned integer of little-endian bytes. *)
fromLE[bytes_List] := FromDigits[Reverse[bytes], 256];

(* utf8[s]: the UTF-8 bytes of a string. *)
utf8[s_String] := ToCharacterCode[s, "UTF8"];

(* hex[bytes]: lower-case hexadecimal, two digits a byte. *)
hex[bytes_List] := StringJoin[IntegerString[#, 16, 2] & /@ bytes];

(* ------------------------------------------------------------------ handshake, section 3 *)

(* The 8-byte magic: 89 4c 4e 4b 0d 0a 1a 0a ("\x89LNK\r\n\x1a\n"). *)
$magic = {137, 76, 78, 75, 13, 10, 26, 10};
$major = 1;
$minor = 1;
$linkServerMode = 1; (* link mode LINKSERVER; DIRECT is 0 *)
$clientHasKey = 1;   (* client hello flag bit 0 *)

(* clientHello[flags]: the 12-byte client hello in link-server mode (section 3.1). *)
clientHello[flags_Integer] := Join[$magic, {$major, $minor, $linkServerMode, flags}];

(* parseServerHello[bytes]: the fields of a 28-byte server hello (section 3.2). *)
parseServerHello[bytes_List] /; Length[bytes] == 28 := <|
  "Magic" -> (Take[bytes, 8] === $magic),
  "Major" -> bytes[[9]], "Minor" -> bytes[[10]],
  "Status" -> bytes[[11]], "Flags" -> bytes[[12]],
  "LinkID" -> Take[bytes, {13, 28}]|>;

(* sha256[bytes]: the 32-byte SHA-256 digest. Hash of a ByteArray hashes its bytes;
   the integer form, turned into 32 big-endian bytes, is the same as the "ByteArray"
   form of newer versions and also works where that form is missing. *)
sha256[bytes_List] := IntegerDigits[Hash[ByteArray[bytes], "SHA256"], 256, 32];

(* hmacSHA256[key, msg]: HMAC-SHA256 (RFC 2104) with SHA-256's 64-byte block:
   a longer key is hashed first, the key is padded with zeros to 64 bytes, then
   H((K xor opad) ++ H((K xor ipad) ++ msg)) with ipad = 0x36, opad = 0x5c. *)
hmacSHA256[key_List, msg_List] := Module[{k = key},
  If[Length[k] > 64, k = sha256[k]];
  k = PadRight[k, 64];
  sha256[Join[BitXor[k, 92], sha256[Join[BitXor[k, 54], msg]]]]];

(* The proof labels: 25 ASCII bytes and a zero byte (section 3.5). *)
$clientLabel = Append[ToCharacterCode["linkserver 1 client proof"], 0];
$serverLabel = Append[ToCharacterCode["linkserver 1 server proof"], 0];

(* keyBytes[key]: a key string's UTF-8 bytes are the HMAC key. *)
keyBytes[key_String] := utf8[key];
keyBytes[key_List] := key;

(* clientProof / serverProof: HMAC-SHA256(key, label ++ server nonce ++ client nonce ++ link id). *)
clientProof[key_, serverNonce_List, clientNonce_List, linkId_List] :=
  hmacSHA256[keyBytes[key], Join[$clientLabel, serverNonce, clientNonce, linkId]];
serverProof[key_, serverNonce_List, clientNonce_List, linkId_List] :=
  hmacSHA256[keyBytes[key], Join[$serverLabel, serverNonce, clientNonce, linkId]];

(* newNonce[]: 32 fresh random bytes. *)
newNonce[] := RandomInteger[255, 32];

(* ------------------------------------------------------------------ frames, sections 4-6 *)

$kindExpression = 1; $kindMessage = 2; $kindClose = 3; $kindPing = 4; $kindPong = 5;
$abort = 3;          (* urgent message ABORT, section 5 *)
$closeNormal = 0;    (* close code NORMAL, section 6 *)
$closeNames = {"NORMAL", "GOING_AWAY", "PROTOCOL_ERROR", "FRAME_TOO_LARGE", "IDLE_TIMEOUT",
  "HANDSHAKE_TIMEOUT", "UNSUPPORTED_VERSION", "INTERNAL_ERROR", "AUTH_FAILED", "TOO_MANY_LINKS"};
closeName[code_Integer] := If[0 <= code < Length[$closeNames], $closeNames[[code + 1]], "code " <> ToString[code]];

(* frame[kind, payload]: kind byte, payload length as u32 little-endian, payload (section 4.1). *)
frame[kind_Integer, payload_List] := Join[{kind}, u32le[Length[payload]], payload];

(* expressionFrame[wxf]: an EXPRESSION frame around WXF bytes (section 4.2). *)
expressionFrame[wxf_List] := frame[$kindExpression, wxf];

(* messageFrame[code, arg]: a MESSAGE frame, code and argument as u32 (section 5). *)
messageFrame[code_Integer, arg_Integer: 0] := frame[$kindMessage, Join[u32le[code], u32le[arg]]];

(* utf8Cut[bytes, n]: at most n bytes of UTF-8, never ending inside a character. *)
utf8Cut[bytes_List, n_Integer] := Module[{t, start, lead, need},
  If[Length[bytes] <= n, Return[bytes]];
  t = Take[bytes, n];
  (* the last byte that is not a continuation byte (10xxxxxx) starts the last character *)
  start = Length[t];
  While[start > 0 && 128 <= t[[start]] < 192, start--];
  If[start == 0, Return[{}]];
  lead = t[[start]];
  need = Which[lead < 128, 1, lead >= 240, 4, lead >= 224, 3, lead >= 192, 2, True, 1];
  If[Length[t] - start + 1 < need, Take[t, start - 1], t]];

(* closeFrame[code, reason]: a CLOSE frame, code as u16, then the UTF-8 reason cut to 1024 bytes (section 6). *)
closeFrame[code_Integer, reason_String: ""] := frame[$kindClose, Join[u16le[code], utf8Cut[utf8[reason], 1024]]];

(* pingFrame / pongFrame: PING and its answer carry the same payload (section 4.3). *)
pingFrame[payload_List] := frame[$kindPing, payload];
pongFrame[payload_List] := frame[$kindPong, payload];

(* parseFrameHeader[bytes]: {kind, payload length} of a 5-byte frame header. *)
parseFrameHeader[bytes_List] /; Length[bytes] == 5 := {First[bytes], fromLE[Rest[bytes]]};

(* parseClose[payload]: {code, reason} of a CLOSE payload. *)
parseClose[payload_List] /; Length[payload] >= 2 :=
  {fromLE[Take[payload, 2]], FromCharacterCode[Drop[payload, 2], "UTF8"]};

(* parseMessage[payload]: {code, argument} of a MESSAGE payload. *)
parseMessage[payload_List] /; Length[payload] == 8 := {fromLE[Take[payload, 4]], fromLE[Drop[payload, 4]]};

(* ------------------------------------------------------------------ addresses *)

(* parseAddress[name]: <|"Host", "Port", "Pool"|> of "port@host[/pool]", "port", "@host";
   the host may be an IPv6 address in brackets. $Failed for anything else. *)
$defaultPort = 31415;
$defaultHost = "127.0.0.1";
parseAddress[name_String] := Module[{text = name, pool = None, at, portText, host, slash},
  at = StringPosition[text, "@"];
  If[at === {},
    portText = text; host = "",
    portText = StringTake[text, at[[1, 1]] - 1];
    host = StringDrop[text, at[[1, 1]]]];
  slash = StringPosition[host, "/"];
  If[slash =!= {},
    pool = StringDrop[host, slash[[-1, 1]]];
    host = StringTake[host, slash[[-1, 1]] - 1];
    If[pool === "", pool = None]];
  host = StringReplace[host, {"[" -> "", "]" -> ""}];
  If[host === "", host = $defaultHost];
  Which[
    portText === "", <|"Host" -> host, "Port" -> $defaultPort, "Pool" -> pool|>,
    StringMatchQ[portText, DigitCharacter ..] && FromDigits[portText] <= 65535,
      <|"Host" -> host, "Port" -> FromDigits[portText], "Pool" -> pool|>,
    True, $Failed]];
parseAddress[_] := $Failed;

(* firstLine[bytes]: the printable ASCII of bytes up to the first CR or LF, as a string. *)
firstLine[bytes_List] := Module[{n = 0},
  While[n < Length[bytes] && bytes[[n + 1]] =!= 13 && bytes[[n + 1]] =!= 10, n++];
  FromCharacterCode[Select[Take[bytes, n], 32 <= # < 127 &]]];

(* selectPacket[pool, persistent, kernel]: the LinkServerSelect packet of section 8.6,
   or None when nothing is chosen. *)
selectPacket[pool_, persistent_, kernel_] := Module[{rules = {}},
  If[StringQ[pool], AppendTo[rules, "pool" -> pool]];
  If[persistent === True, AppendTo[rules, "persistent" -> True]];
  If[StringQ[kernel], AppendTo[rules, "kernel" -> kernel]];
  If[rules === {}, None, Global`LinkServerSelect[Association @@ rules]]];

(* ------------------------------------------------------------------ socket I/O *)

(* Each connection's mutable state lives in $state[id, field]; id is the link id in hex. *)

toByteArray[bytes_List] := ByteArray[bytes];

send[id_, bytes_List] := (BinaryWrite[$state[id, "Socket"], toByteArray[bytes]]; $state[id, "LastSend"] = AbsoluteTime[];);

(* fill[id, deadline]: wait for more bytes until deadline (AbsoluteTime); True if some came,
   False on timeout, EndOfFile at end of stream. *)
fill[id_, deadline_] := Module[{sock = $state[id, "Socket"], wait, data},
  wait = If[deadline === Infinity, 60, Min[60, Max[0, deadline - AbsoluteTime[]]]];
  If[!TrueQ[SocketReadyQ[sock, wait]],
    Return[If[deadline =!= Infinity && AbsoluteTime[] >= deadline, False, fillAgain]]];
  data = SocketReadMessage[sock];
  If[!ByteArrayQ[data] || Length[data] == 0, Return[EndOfFile]];
  $state[id, "Buffer"] = Join[$state[id, "Buffer"], Normal[data]];
  True];

(* readBytes[id, n, deadline]: exactly n bytes, or False (timeout) / EndOfFile. While it
   waits for a long evaluation it pings every 300 s of its own silence (section 4.3). *)
readBytes[id_, n_Integer, deadline_] := Module[{r, out},
  r = Catch[
    While[Length[$state[id, "Buffer"]] < n,
      r = fill[id, deadline];
      Which[
        r === fillAgain, If[AbsoluteTime[] - $state[id, "LastSend"] > 300, send[id, pingFrame[{}]]],
        r =!= True, Throw[r, $readTag]]];
    True, $readTag];
  If[r =!= True, Return[r]];
  out = Take[$state[id, "Buffer"], n];
  $state[id, "Buffer"] = Drop[$state[id, "Buffer"], n];
  out];

(* readFrame[id, deadline]: {kind, payload}, or False / EndOfFile. *)
readFrame[id_, deadline_] := Module[{header, kind, length, payload},
  header = readBytes[id, 5, deadline];
  If[!ListQ[header], Return[header]];
  {kind, length} = parseFrameHeader[header];
  payload = If[length == 0, {}, readBytes[id, length, deadline]];
  If[!ListQ[payload], Return[payload]];
  {kind, payload}];

closeSocket[id_] := (Quiet[Close[$state[id, "Socket"]]]; $state[id, "Open"] = False;);

(* ------------------------------------------------------------------ LinkServerConnect *)

Options[LinkServerConnect] = {"Key" -> None, "Pool" -> Automatic, "Persistent" -> False,
  "Kernel" -> None, "Timeout" -> 10};

LinkServerConnect[info_Association, opts : OptionsPattern[]] := Module[{address, key},
  address = If[StringQ[info["address"]], info["address"], ""];
  If[TrueQ[info["tls"]], Message[LinkServerConnect::notls, address]; Return[$Failed]];
  key = OptionValue["Key"];
  If[key === None && StringQ[info["key"]], key = info["key"]];
  LinkServerConnect[address, "Key" -> key, opts]];

LinkServerConnect[name_String, opts : OptionsPattern[]] :=
  Catch[connect[name, OptionValue["Key"], OptionValue["Pool"], OptionValue["Persistent"],
    OptionValue["Kernel"], OptionValue["Timeout"]], $tag];

(* fail[sym::tag, args]: issue the message and leave LinkServerConnect with $Failed.
   HoldFirst keeps sym::tag from evaluating to its text. *)
SetAttributes[fail, HoldFirst];
fail[msg_, args___] := (Message[msg, args]; Throw[$Failed, $tag]);

connect[name_, key_, poolOpt_, persistent_, kernel_, timeout_] := Module[
  {addr, sock, id, deadline, bytes, hello, flags, close, serverNonce, clientNonce, reply, pool, sel, conn},
  addr = parseAddress[name];
  If[addr === $Failed, fail[LinkServerConnect::badname, name]];
  If[key =!= None && !StringQ[key], fail[LinkServerConnect::auth, name, "\"Key\" must be a string"]];
  pool = If[StringQ[poolOpt], poolOpt, addr["Pool"]];
  sock = Quiet[SocketConnect[{addr["Host"], addr["Port"]}, "TCP"]];
  If[Head[sock] =!= SocketObject, fail[LinkServerConnect::connect, name, "no server answered there"]];
  id = "handshake-" <> ToString[$ModuleNumber];
  $state[id, "Socket"] = sock; $state[id, "Buffer"] = {}; $state[id, "Open"] = True;
  $state[id, "LastSend"] = AbsoluteTime[];
  deadline = AbsoluteTime[] + timeout;
  flags = If[StringQ[key], $clientHasKey, 0];
  send[id, clientHello[flags]];
  (* a stranger may send fewer than 28 bytes: read what comes and check the magic first *)
  bytes = readBytes[id, 8, deadline];
  If[bytes === False, closeSocket[id]; fail[LinkServerConnect::timeout, name, timeout]];
  If[bytes === EndOfFile || bytes =!= $magic,
    Module[{got},
      (* the line a linkserver-like stranger sends ends in CR LF: wait briefly for it *)
      While[!MemberQ[$state[id, "Buffer"], 10] && Length[$state[id, "Buffer"]] < 200 &&
          fill[id, AbsoluteTime[] + 1] === True, Null];
      got = Join[If[ListQ[bytes], bytes, {}], $state[id, "Buffer"]];
      closeSocket[id];
      If[got === {}, fail[LinkServerConnect::closed, name]];
      If[First[got] == 22 || First[got] == 21, fail[LinkServerConnect::notls, name]]; (* a TLS record *)
      fail[LinkServerConnect::notlinkserver, name,
        firstLine[got]]]];
  bytes = readBytes[id, 20, deadline];
  If[!ListQ[bytes], closeSocket[id]; fail[LinkServerConnect::closed, name]];
  hello = parseServerHello[Join[$magic, bytes]];
  close = Function[{},
    Module[{f = readFrame[id, AbsoluteTime[] + 2]},
      closeSocket[id];
      If[ListQ[f] && f[[1]] == $kindClose, parseClose[f[[2]]][[2]], "(no reason given)"]]];
  If[hello["Major"] =!= $major || hello["Status"] == 1,
    fail[LinkServerConnect::version, name, ToString[hello["Major"]] <> "." <> ToString[hello["Minor"]],
      ToString[$major] <> "." <> ToString[$minor], close[]]];
  If[hello["Status"] == 2, fail[LinkServerConnect::needkey, name, close[]]];
  If[hello["Status"] =!= 0, closeSocket[id]; fail[LinkServerConnect::refused, name, "unknown status " <> ToString[hello["Status"]]]];
  Which[
    OddQ[hello["Flags"]] && !StringQ[key],
      closeSocket[id]; fail[LinkServerConnect::needkey, name, "it sent a key challenge"],
    !OddQ[hello["Flags"]] && StringQ[key],
      closeSocket[id];
      fail[LinkServerConnect::auth, name, "the server did not ask for the key, so it cannot prove it is the server the key belongs to"],
    StringQ[key],
      serverNonce = readBytes[id, 32, deadline];
      If[!ListQ[serverNonce], closeSocket[id]; fail[LinkServerConnect::closed, name]];
      clientNonce = newNonce[];
      send[id, Join[clientNonce, clientProof[key, serverNonce, clientNonce, hello["LinkID"]]]];
      reply = readBytes[id, 1, deadline];
      If[!ListQ[reply], closeSocket[id]; fail[LinkServerConnect::closed, name]];
      If[reply =!= {0}, fail[LinkServerConnect::auth, name, close[]]];
      reply = readBytes[id, 32, deadline];
      If[!ListQ[reply], closeSocket[id]; fail[LinkServerConnect::closed, name]];
      If[reply =!= serverProof[key, serverNonce, clientNonce, hello["LinkID"]],
        closeSocket[id];
        fail[LinkServerConnect::auth, name, "the server's proof is wrong: that peer does not know the key"]]];
  (* the link is open: move the state to its link id *)
  conn = hex[hello["LinkID"]];
  Scan[($state[conn, #] = $state[id, #]) &, {"Socket", "Buffer", "Open", "LastSend"}];
  With[{old = id}, Scan[($state[old, #] =.) &, {"Socket", "Buffer", "Open", "LastSend"}]];
  $state[conn, "Address"] = name;
  $state[conn, "Pool"] = pool; $state[conn, "Kernel"] = None; $state[conn, "Stale"] = 0;
  sel = selectPacket[pool, persistent, kernel];
  If[sel =!= None,
    (* no time limit here: a pool that has no kernel free bounds the wait itself (section 8.4) *)
    reply = request[conn, Hold[Evaluate[sel]], Infinity];
    Which[
      AssociationQ[reply],
        $state[conn, "Pool"] = reply["pool"]; $state[conn, "Kernel"] = reply["kernel"],
      !TrueQ[$state[conn, "Open"]], Throw[$Failed, $tag], (* the closing message said why *)
      True,
        LinkServerClose[LinkServerConnection[conn]];
        fail[LinkServerConnect::select, name, $state[conn, "LastMessage"]]]];
  LinkServerConnection[conn]];

(* ------------------------------------------------------------------ evaluation *)

(* request[id, Hold[packet], timeout]: send one request packet (unevaluated), handle the
   answer's side packets and return what its ReturnPacket holds (section 8.1). *)
request[id_, Hold[packet_], timeout_] := Module[{deadline, result},
  (* answers of requests abandoned by a second local abort come first: skip them *)
  While[$state[id, "Stale"] > 0 && TrueQ[$state[id, "Open"]],
    Block[{Print, Message}, readAnswer[id, Infinity]]; $state[id, "Stale"]--];
  If[!TrueQ[$state[id, "Open"]], Return[$Failed]];
  deadline = If[NumericQ[timeout], AbsoluteTime[] + timeout, Infinity];
  $state[id, "LastMessage"] = "";
  send[id, expressionFrame[Normal[BinarySerialize[Unevaluated[packet]]]]];
  result = CheckAbort[
    readAnswer[id, deadline],
    (* the local evaluation was aborted: abort the remote one and wait for its $Aborted;
       a second local abort gives up waiting, and the answer is skipped later *)
    AbortProtect[send[id, messageFrame[$abort]]; $state[id, "Stale"]++];
    With[{r = readAnswer[id, Infinity]}, $state[id, "Stale"]--; r]];
  If[result === $timedOut,
    Message[LinkServerEvaluate::timeout, timeout];
    send[id, messageFrame[$abort]];
    result = readAnswer[id, Infinity]];
  If[MatchQ[result, Hold[_]], First[result], result]];

(* remoteMessage[id, text]: issue a message of the remote evaluation here. *)
remoteMessage[id_, text_String] := ($state[id, "LastMessage"] = text; Message[LinkServerEvaluate::remote, text]);

(* readAnswer[id, deadline]: read frames until the ReturnPacket of the current request;
   Hold[result], $timedOut, or $Failed when the link ended. *)
readAnswer[id_, deadline_] := Module[{pending = None},
  Catch[
    While[True,
      Module[{f, kind, payload, held, code, reason},
        f = readFrame[id, deadline];
        If[f === False, Throw[$timedOut, $answerTag]];
        If[f === EndOfFile,
          Message[LinkServerEvaluate::broken, $state[id, "Address"]]; closeSocket[id];
          Throw[$Failed, $answerTag]];
        {kind, payload} = f;
        Which[
          kind == $kindExpression,
            held = BinaryDeserialize[ByteArray[payload], Hold];
            (* a MessagePacket's text comes in the TextPacket after it (section 8.1) *)
            If[pending =!= None && !MatchQ[held, Hold[TextPacket[_String]]],
              remoteMessage[id, pending]; pending = None];
            Switch[held,
              Hold[ReturnPacket[_]], Throw[held /. Hold[ReturnPacket[r_]] :> Hold[r], $answerTag],
              Hold[MessagePacket[_, _]],
                pending = held /. Hold[MessagePacket[sym_, tag_]] :> ToString[HoldForm[sym]] <> "::" <> ToString[tag],
              Hold[TextPacket[_String]],
                If[pending =!= None,
                  remoteMessage[id, held[[1, 1]]]; pending = None,
                  Print[held[[1, 1]]]],
              Hold[(InputPacket | InputStringPacket)[___]],
                send[id, expressionFrame[Normal[BinarySerialize[
                  EnterTextPacket[ToString[InputString[If[Length[held[[1]]] > 0, held[[1, 1]], ""]]]]]]]],
              _, Null],
          kind == $kindPing, send[id, pongFrame[payload]],
          kind == $kindPong || kind == $kindMessage, Null,
          kind == $kindClose,
            {code, reason} = parseClose[payload];
            Quiet[send[id, closeFrame[$closeNormal]]]; closeSocket[id];
            Message[LinkServerEvaluate::closed, closeName[code], reason];
            Throw[$Failed, $answerTag],
          True,
            Quiet[send[id, closeFrame[2, "unknown frame kind"]]]; closeSocket[id];
            Message[LinkServerEvaluate::protocol, "a frame of unknown kind " <> ToString[kind]];
            Throw[$Failed, $answerTag]]]],
    $answerTag]];

Options[LinkServerEvaluate] = {"Timeout" -> Infinity};
SetAttributes[LinkServerEvaluate, HoldRest];

LinkServerEvaluate[LinkServerConnection[id_String], expr_, OptionsPattern[]] :=
  If[!TrueQ[$state[id, "Open"]],
    Message[LinkServerEvaluate::notopen, id]; $Failed,
    request[id, Hold[EvaluatePacket[expr]], OptionValue["Timeout"]]];

(* ------------------------------------------------------------------ abort and close *)

LinkServerAbort[LinkServerConnection[id_String]] :=
  If[TrueQ[$state[id, "Open"]], send[id, messageFrame[$abort]]; Null, $Failed];

LinkServerClose[LinkServerConnection[id_String]] := Module[{deadline, f},
  If[!TrueQ[$state[id, "Open"]], Return[Null]];
  Quiet[send[id, closeFrame[$closeNormal]]];
  (* keep reading until the answering CLOSE, end of stream or 10 s (section 6) *)
  deadline = AbsoluteTime[] + 10;
  While[True,
    f = Quiet[readFrame[id, deadline]];
    If[!ListQ[f] || f[[1]] == $kindClose, Break[]]];
  closeSocket[id];
  Null];

(* ------------------------------------------------------------------ the connection object *)

LinkServerConnection[id_String][field_String] := Switch[field,
  "LinkID", id,
  "Open", TrueQ[$state[id, "Open"]],
  "Address" | "Pool" | "Kernel" | "Socket", $state[id, field],
  _, Missing["NotAvailable", field]];

Format[LinkServerConnection[id_String]] :=
  Row[{"LinkServerConnection[", $state[id, "Address"], ", ", id,
    If[TrueQ[$state[id, "Open"]], "", ", closed"], "]"}];

End[];

EndPackage[];
