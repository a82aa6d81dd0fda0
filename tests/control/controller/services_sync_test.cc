// The controller's services side against a scripted ApplyServices: when it
// applies, with which generation, and how it takes each kind of failure.
#include "controller/services_sync.h"

#include <deque>

#include <gtest/gtest.h>

namespace meshwire::control {
namespace {

class ServicesSyncTest : public ::testing::Test {
 protected:
  ServicesSyncTest()
      : sync_("node1", kResync,
              [this](const v1::ApplyServicesRequest& r, v1::ApplyServicesResponse* resp) {
                sent_.push_back(r);
                grpc::Status st = grpc::Status::OK;
                if (!answers_.empty()) {
                  st = answers_.front();
                  answers_.pop_front();
                }
                if (st.ok()) {
                  live_ = r.generation();
                  resp->set_live_generation(live_);
                  resp->set_changed(true);
                }
                return st;
              },
              [this](const std::string& line) { log_.push_back(line); }) {
    set_backends({"10.1.0.5", "10.1.0.6"});
  }

  // Service shop/web (10.96.0.10:80) with these ready endpoints.
  void set_backends(const std::vector<std::string>& addresses) {
    ServiceObject svc;
    svc.ns = "shop";
    svc.name = "web";
    svc.cluster_ips = {*dp::parse_ip_address("10.96.0.10")};
    svc.ports = {{"http", kProtoTcp, 80}};
    cluster_.services["shop/web"] = std::make_shared<const ServiceObject>(svc);
    EndpointSliceObject slice;
    slice.ns = "shop";
    slice.name = "web-a";
    slice.service = "web";
    slice.family = 4;
    slice.ports = {{"http", kProtoTcp, 8080}};
    for (const std::string& a : addresses) {
      Endpoint ep;
      ep.addresses = {*dp::parse_ip_address(a)};
      slice.endpoints.push_back(ep);
    }
    cluster_.endpoint_slices["shop/web-a"] = std::make_shared<const EndpointSliceObject>(slice);
  }

  // One round of the controller's loop: the objects only when asked for.
  void round() {
    if (!sync_.due(live_, now_)) return;
    sync_.run(sync_.needs_objects() ? &cluster_ : nullptr, live_, now_);
  }

  static constexpr uint64_t kResync = 250;
  uint64_t now_ = 1000;
  uint64_t live_ = 0;  // the data plane's services_generation
  ClusterObjects cluster_;
  std::deque<grpc::Status> answers_;  // OK when empty
  std::vector<v1::ApplyServicesRequest> sent_;
  std::vector<std::string> log_;
  ServicesSync sync_;
};

TEST_F(ServicesSyncTest, AppliesOnceAsTheNextGenerationAndSaysWhatItApplied) {
  live_ = 4;  // programmed before, by another controller or by hand
  round();
  ASSERT_EQ(sent_.size(), 1u);
  EXPECT_EQ(sent_[0].generation(), 5u);
  ASSERT_EQ(sent_[0].services_size(), 1);
  EXPECT_EQ(sent_[0].services(0).name(), "shop/web:http");
  EXPECT_EQ(sent_[0].services(0).backends_size(), 2);
  EXPECT_EQ(sync_.applied_generation(), 5u);
  ASSERT_EQ(log_.size(), 1u);
  EXPECT_EQ(log_[0].rfind("applied services generation 5: 1 frontend(s), 2 backend(s) (computed ", 0), 0u) << log_[0];
  EXPECT_NE(log_[0].find(" ms, of which the data plane built 0 ms)"), std::string::npos) << log_[0];
  now_ += 10 * kResync;
  EXPECT_FALSE(sync_.due(live_, now_));
  round();
  EXPECT_EQ(sent_.size(), 1u);
}

TEST_F(ServicesSyncTest, ObjectsThatChangeButGiveTheSameSetAreNotApplied) {
  round();
  sync_.objects_changed();
  EXPECT_TRUE(sync_.needs_objects());
  round();
  EXPECT_EQ(sent_.size(), 1u);
  set_backends({"10.1.0.5"});
  sync_.objects_changed();
  round();
  ASSERT_EQ(sent_.size(), 2u);
  EXPECT_EQ(sent_[1].generation(), 2u);
  EXPECT_EQ(sent_[1].services(0).backends_size(), 1);
}

TEST_F(ServicesSyncTest, ARestartedDataPlaneGetsTheSetAgainWithoutReadingTheObjects) {
  round();
  live_ = 0;  // restarted
  EXPECT_TRUE(sync_.due(live_, now_));
  EXPECT_FALSE(sync_.needs_objects());
  sync_.run(nullptr, live_, now_);
  ASSERT_EQ(sent_.size(), 2u);
  EXPECT_EQ(sent_[1].generation(), 1u);
  EXPECT_EQ(sent_[1].SerializeAsString(), sent_[0].SerializeAsString());  // the same set, as generation 1 again
}

TEST_F(ServicesSyncTest, UnimplementedIsSaidOnceAndRetriedAtResyncOnly) {
  answers_ = {grpc::Status(grpc::StatusCode::UNIMPLEMENTED, ""), grpc::Status(grpc::StatusCode::UNIMPLEMENTED, ""),
              grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "")};
  round();
  ASSERT_EQ(sent_.size(), 1u);
  EXPECT_EQ(sync_.applied_generation(), 0u);
  for (int i = 0; i < 5; ++i) round();  // the same instant: no retry
  EXPECT_EQ(sent_.size(), 1u);
  now_ += kResync;
  round();
  EXPECT_EQ(sent_.size(), 2u);
  now_ += kResync;
  round();
  EXPECT_EQ(sent_.size(), 3u);
  EXPECT_EQ(log_, (std::vector<std::string>{"ApplyServices: not implemented by this data plane: services are not "
                                            "programmed (will retry)"}));
  now_ += kResync;
  round();  // the data plane was upgraded
  EXPECT_EQ(sync_.applied_generation(), 1u);
  EXPECT_EQ(log_.size(), 2u);
}

TEST_F(ServicesSyncTest, AnInvalidSetWaitsUntilItChanges) {
  answers_ = {grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "services[0].backends[1].address: bad")};
  round();
  ASSERT_EQ(log_.size(), 1u);
  EXPECT_EQ(log_[0],
            "ApplyServices generation 1: services[0].backends[1].address: bad (not sent again until the services "
            "change)");
  now_ += 10 * kResync;
  round();
  sync_.objects_changed();  // but the set comes out the same
  round();
  EXPECT_EQ(sent_.size(), 1u);
  set_backends({"10.1.0.7"});
  sync_.objects_changed();
  round();
  EXPECT_EQ(sent_.size(), 2u);
  EXPECT_EQ(sync_.applied_generation(), 1u);
}

TEST_F(ServicesSyncTest, ARestartedDataPlaneGetsTheLastAcceptedSetWhenTheNewerWasRefused) {
  round();
  set_backends({"10.1.0.7"});
  sync_.objects_changed();
  answers_ = {grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "no")};
  round();
  ASSERT_EQ(sent_.size(), 2u);
  live_ = 0;
  now_ += kResync;
  round();
  ASSERT_EQ(sent_.size(), 3u);
  EXPECT_EQ(sent_[2].generation(), 1u);
  ASSERT_EQ(sent_[2].services(0).backends_size(), 2);  // the first set, accepted before
}

TEST_F(ServicesSyncTest, AGenerationThatMovedIsRetriedNextRoundAboveIt) {
  answers_ = {grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "generation 1 is below the live one (7)")};
  round();
  live_ = 7;  // read again next round
  round();
  ASSERT_EQ(sent_.size(), 2u);
  EXPECT_EQ(sent_[1].generation(), 8u);
  EXPECT_EQ(sync_.applied_generation(), 8u);
}

TEST_F(ServicesSyncTest, OtherProxiesServicesAreSaidOnce) {
  ServiceObject theirs;
  theirs.ns = "shop";
  theirs.name = "theirs";
  theirs.proxy_name = "other";
  theirs.cluster_ips = {*dp::parse_ip_address("10.96.0.11")};
  cluster_.services["shop/theirs"] = std::make_shared<const ServiceObject>(theirs);
  round();
  sync_.objects_changed();
  round();
  ASSERT_EQ(log_.size(), 2u);
  EXPECT_EQ(log_[0], "services left out: shop/theirs: handled by proxy 'other'");
}

}  // namespace
}  // namespace meshwire::control
