// A scripted FIX 4.4 initiator on the QuickFIX engine (Debian libquickfix-dev),
// used by tools/tests/fix_quickfix.rs to drive BrokerX's FIX gateway with an
// engine we did not write. Build: g++ -std=c++14 qfclient.cpp -lquickfix -lpthread
//
// Usage: qfclient HOST PORT SENDER TARGET USERNAME PASSWORD STORE_DIR
// Reads one command per line on stdin and answers each with "OK" or "FAIL why"
// on stdout; received application messages are echoed to stderr.
//   logon                 wait (10 s) until logged on
//   send F|F|...          send an application message; F is tag=value, or
//                         +COUNT.DELIM:tag=value,tag=value for a group entry
//   expect F|F|...        wait (10 s) for a received application message with
//                         all these tag=value pairs (earlier ones are skipped)
//   logout                Logout handshake, wait until logged off
//   relogon               enable the session again, wait until logged on
//   wait_logout           wait (10 s) until the session is logged off
//   quit
#include <quickfix/Application.h>
#include <quickfix/FileStore.h>
#include <quickfix/Message.h>
#include <quickfix/Session.h>
#include <quickfix/SessionSettings.h>
#include <quickfix/SocketInitiator.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <iostream>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

namespace {

std::mutex mu;
std::condition_variable cv;
bool logged_on = false;
std::deque<std::string> inbox;

class App : public FIX::Application {
 public:
  App(std::string user, std::string password) : user_(user), password_(password) {}
  void onCreate(const FIX::SessionID&) override {}
  void onLogon(const FIX::SessionID&) override {
    std::lock_guard<std::mutex> g(mu);
    logged_on = true;
    cv.notify_all();
  }
  void onLogout(const FIX::SessionID&) override {
    std::lock_guard<std::mutex> g(mu);
    logged_on = false;
    cv.notify_all();
  }
  void toAdmin(FIX::Message& m, const FIX::SessionID&) override {
    if (m.getHeader().getField(35) == "A") {
      m.setField(553, user_);
      m.setField(554, password_);
    }
  }
  void toApp(FIX::Message&, const FIX::SessionID&) throw(FIX::DoNotSend) override {}
  void fromAdmin(const FIX::Message&, const FIX::SessionID&) throw(
      FIX::FieldNotFound, FIX::IncorrectDataFormat, FIX::IncorrectTagValue,
      FIX::RejectLogon) override {}
  void fromApp(const FIX::Message& m, const FIX::SessionID&) throw(
      FIX::FieldNotFound, FIX::IncorrectDataFormat, FIX::IncorrectTagValue,
      FIX::UnsupportedMessageType) override {
    std::string raw = m.toString();
    std::string shown = raw;
    for (auto& c : shown) if (c == '\x01') c = '|';
    std::cerr << "recv " << shown << std::endl;
    std::lock_guard<std::mutex> g(mu);
    inbox.push_back(raw);
    cv.notify_all();
  }

 private:
  std::string user_, password_;
};

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream in(s);
  while (std::getline(in, cur, sep)) out.push_back(cur);
  return out;
}

bool parse_pair(const std::string& f, int& tag, std::string& value) {
  auto eq = f.find('=');
  if (eq == std::string::npos) return false;
  tag = std::stoi(f.substr(0, eq));
  value = f.substr(eq + 1);
  return true;
}

bool build(const std::string& spec, FIX::Message& m) {
  for (const auto& f : split(spec, '|')) {
    if (f.empty()) continue;
    int tag;
    std::string value;
    if (f[0] == '+') {
      auto colon = f.find(':');
      auto dot = f.find('.');
      if (colon == std::string::npos || dot == std::string::npos) return false;
      int count = std::stoi(f.substr(1, dot - 1));
      int delim = std::stoi(f.substr(dot + 1, colon - dot - 1));
      FIX::Group g(count, delim);
      for (const auto& p : split(f.substr(colon + 1), ',')) {
        if (!parse_pair(p, tag, value)) return false;
        g.setField(tag, value);
      }
      m.addGroup(g);
      continue;
    }
    if (!parse_pair(f, tag, value)) return false;
    if (tag == 35)
      m.getHeader().setField(35, value);
    else
      m.setField(tag, value);
  }
  return true;
}

bool matches(const std::string& raw, const std::string& spec) {
  for (const auto& f : split(spec, '|')) {
    if (f.empty()) continue;
    std::string needle = "\x01" + f + "\x01";
    if (raw.find(needle) == std::string::npos) return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 8) {
    std::cerr << "usage: qfclient HOST PORT SENDER TARGET USERNAME PASSWORD STORE_DIR\n";
    return 2;
  }
  std::ostringstream cfg;
  cfg << "[DEFAULT]\nConnectionType=initiator\nReconnectInterval=1\n"
      << "FileStorePath=" << argv[7] << "\nStartTime=00:00:00\nEndTime=00:00:00\n"
      << "UseDataDictionary=N\nHeartBtInt=30\nResetOnLogon=N\n"
      << "SocketConnectHost=" << argv[1] << "\nSocketConnectPort=" << argv[2] << "\n"
      << "[SESSION]\nBeginString=FIX.4.4\nSenderCompID=" << argv[3]
      << "\nTargetCompID=" << argv[4] << "\n";
  std::istringstream cfg_in(cfg.str());
  FIX::SessionSettings settings(cfg_in);
  App app(argv[5], argv[6]);
  FIX::FileStoreFactory store(settings);
  FIX::SocketInitiator initiator(app, store, settings);
  initiator.start();
  FIX::SessionID id("FIX.4.4", argv[3], argv[4]);
  auto wait = [](std::unique_lock<std::mutex>& lk, auto pred) {
    return cv.wait_for(lk, std::chrono::seconds(10), pred);
  };
  std::string line;
  int status = 0;
  while (std::getline(std::cin, line)) {
    auto space = line.find(' ');
    std::string cmd = line.substr(0, space);
    std::string arg = space == std::string::npos ? "" : line.substr(space + 1);
    std::string fail;
    if (cmd == "logon") {
      std::unique_lock<std::mutex> lk(mu);
      if (!wait(lk, [] { return logged_on; })) fail = "not logged on";
    } else if (cmd == "send") {
      FIX::Message m;
      if (!build(arg, m))
        fail = "bad message spec";
      else {
        try {
          if (!FIX::Session::sendToTarget(m, id)) fail = "not sent";
        } catch (std::exception& e) {
          fail = e.what();
        }
      }
    } else if (cmd == "expect") {
      std::unique_lock<std::mutex> lk(mu);
      bool found = wait(lk, [&] {
        while (!inbox.empty()) {
          std::string front = inbox.front();
          inbox.pop_front();
          if (matches(front, arg)) return true;
        }
        return false;
      });
      if (!found) fail = "no message matching " + arg;
    } else if (cmd == "logout") {
      FIX::Session* s = FIX::Session::lookupSession(id);
      if (s) s->logout();
      std::unique_lock<std::mutex> lk(mu);
      if (!wait(lk, [] { return !logged_on; })) fail = "still logged on";
    } else if (cmd == "relogon") {
      FIX::Session* s = FIX::Session::lookupSession(id);
      if (s) s->logon();
      std::unique_lock<std::mutex> lk(mu);
      if (!wait(lk, [] { return logged_on; })) fail = "not logged on again";
    } else if (cmd == "wait_logout") {
      std::unique_lock<std::mutex> lk(mu);
      if (!wait(lk, [] { return !logged_on; })) fail = "still logged on";
    } else if (cmd == "quit") {
      break;
    } else {
      fail = "unknown command " + cmd;
    }
    if (fail.empty()) {
      std::cout << "OK" << std::endl;
    } else {
      std::cout << "FAIL " << fail << std::endl;
      status = 1;
    }
  }
  initiator.stop();
  return status;
}
